"""The results store under concurrent and careless use: claims, reclaiming, schema version, read-only readers."""
from __future__ import annotations

import collections
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, mcbench, rows
from mcbench.benchmarks.record import SCHEMA_VERSION
from mcbench.benchmarks.store import Owner, ResultStore, StoreError

sys.path.insert(0, str(Path(__file__).parent))
from sweep_driver import fake_row  # noqa: E402

DRIVER = Path(__file__).parent / "sweep_driver.py"
SWEEP = ["run", "--task", "digits", "--budget", "smoke", "--methods", "baseline,student"]


class _Spec:
    def __init__(self, run_id, method="baseline", seed=0):
        self.run_id, self.method, self.seed, self.config_hash = run_id, method, seed, "0" * 12


class _Harness:
    class task:
        name = "digits"

    class cfg:
        budget = "smoke"

    dataset_label = "digits"


def _row(run_id: str, seed: int = 0):
    return fake_row(_Harness, _Spec(run_id, seed=seed))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _drivers(tmp_path: Path, n: int, extra: list[str], tag: str) -> list[subprocess.CompletedProcess]:
    log = tmp_path / "computed.log"
    procs = [subprocess.Popen([sys.executable, str(DRIVER), str(tmp_path / f"barrier-{tag}"), str(n), str(log), "--",
                               *SWEEP, *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, COLUMNS="200", PYTHONWARNINGS="ignore"))
             for _ in range(n)]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=300), *p.communicate()) for p in procs]


def _computed(tmp_path: Path) -> collections.Counter:
    return collections.Counter(line.split()[0] for line in (tmp_path / "computed.log").read_text().splitlines())


# --------------------------------------------------------------------------- concurrent sweeps
def test_concurrent_sweeps_run_each_row_once_and_force_recomputes_once(tmp_path):
    """Two real `mcbench run` processes on one store (model work stubbed): every row once, exit 0, both times."""
    extra = ["--seeds", "3", "--db", str(tmp_path / "r.sqlite"), "--cache-dir", str(tmp_path / "ckpt")]
    done = _drivers(tmp_path, 2, extra, "first")
    for p in done:
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stdout + p.stderr
    stored = rows(tmp_path / "r.sqlite")
    assert len(stored) == 6 and len({r[0] for r in stored}) == 6
    counts = _computed(tmp_path)
    assert len(counts) == 6 and set(counts.values()) == {1}, counts
    assert any("another sweep" in p.stdout for p in done), "the sweeps never overlapped"

    forced = _drivers(tmp_path, 2, extra + ["--force"], "force")
    for p in forced:
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stdout + p.stderr
    counts = _computed(tmp_path)
    assert set(counts.values()) == {2}, counts  # once before, exactly once more under the two --force sweeps
    assert len(rows(tmp_path / "r.sqlite")) == 6
    with ResultStore(tmp_path / "r.sqlite", readonly=True) as store:
        log = store.computations()
    assert log.groupby("run_id").size().eq(2).all() and log["pid"].nunique() >= 2
    assert not ResultStore(tmp_path / "r.sqlite", readonly=True).claims()


@pytest.mark.slow
def test_concurrent_real_sweeps(tmp_path):
    """The real thing: two `mcbench run` subprocesses on digits/smoke, 2 methods x 2 seeds, same --db and cache."""
    extra = ["--seeds", "2", "--db", str(tmp_path / "r.sqlite"), "--cache-dir", str(tmp_path / "ckpt")]
    procs = [subprocess.Popen([sys.executable, "-m", "mcbench.benchmarks.cli", *SWEEP, *extra], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, COLUMNS="200", PYTHONWARNINGS="ignore")) for _ in range(2)]
    results = [(p.wait(timeout=1200), *p.communicate()) for p in procs]
    for rc, out, errs in results:
        assert rc == 0 and "Traceback" not in errs and "IntegrityError" not in errs, out + errs
    stored = rows(tmp_path / "r.sqlite")
    assert len(stored) == 4 and {(m, s) for _, m, s, _ in stored} == {(m, s) for m in ("baseline", "student") for s in (0, 1)}
    with ResultStore(tmp_path / "r.sqlite", readonly=True) as store:
        assert store.computations().groupby("run_id").size().eq(1).all()
        assert len(store.computations()) == 4


# --------------------------------------------------------------------------- claims
def test_claim_of_dead_owner_is_reclaimed(tmp_path):
    messages = []
    with ResultStore(tmp_path / "r.sqlite") as store:
        dead = Owner("deadbeef0000", _dead_pid(), socket.gethostname())
        assert store.claim("run-a", dead) == ("claimed", None)
        me = Owner.current()
        assert store.claim("run-a", me, log=messages.append) == ("claimed", None)
        assert [c.owner for c in store.claims()] == [me.id]
        assert "reclaiming run-a" in messages[0] and str(dead.pid) in messages[0]


def test_claim_of_live_owner_is_respected_until_its_heartbeat_is_stale(tmp_path):
    from mcbench.benchmarks import store as store_mod

    with ResultStore(tmp_path / "r.sqlite") as store:
        alive = Owner("a1", os.getpid(), socket.gethostname())       # this very process: alive
        remote = Owner("r1", 1, "some-other-host")                   # another host: only the heartbeat tells
        assert store.claim("run-a", alive)[0] == "claimed"
        assert store.claim("run-b", remote)[0] == "claimed"
        me = Owner("me", os.getpid(), socket.gethostname())
        state, held = store.claim("run-a", me)
        assert state == "busy" and held.owner == "a1" and "pid" in held.describe()
        assert store.claim("run-b", me)[0] == "busy"
        with store.transaction() as c:  # the remote owner stopped beating long ago
            c.execute("UPDATE claims SET heartbeat_unix = ? WHERE owner = 'r1'", (time.time() - store_mod.STALE_AFTER_S - 1,))
        assert store.claim("run-b", me)[0] == "claimed"


def test_heartbeat_refreshes_claims(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        me = Owner.current()
        store.claim("run-a", me)
        with store.transaction() as c:
            c.execute("UPDATE claims SET heartbeat_unix = 0")
        with store.heartbeats(me, every_s=0.05):
            time.sleep(0.5)
        assert store.claims()[0].heartbeat_unix > time.time() - 60


def test_insert_twice_never_raises_and_releases_the_claim(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        me = Owner.current()
        store.claim("run-a", me)
        store.insert(_row("run-a"), owner=me)
        store.insert(_row("run-a"), owner=me)   # the old code raised sqlite3.IntegrityError here
        assert len(store.dataframe()) == 1 and len(store.computations()) == 2 and store.claims() == []
        assert store.claim("run-a", me) == ("done", None)
        assert store.claim("run-a", me, fresh_after=time.time() + 1) == ("claimed", None)


# --------------------------------------------------------------------------- schema version
def _legacy_store(path: Path) -> None:
    with sqlite3.connect(path) as c:   # what the previous mcbench wrote: no user_version, WAL, results only
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE results (run_id TEXT PRIMARY KEY, method TEXT)")


def test_schema_version_is_stored_and_a_mismatch_is_one_line(tmp_path):
    db = tmp_path / "r.sqlite"
    ResultStore(db).close()
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 7}")
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 7}.*or pass a new --db"):
        ResultStore(db)
    for args in (("leaderboard", "--db", str(db)), (*SWEEP, "--seeds", "1", "--db", str(db))):
        p = mcbench(*args)
        assert p.returncode != 0 and "Traceback" not in p.stderr
        lines = [line for line in p.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "schema version" in lines[0] and "--db" in lines[0], p.stderr


def test_legacy_store_is_read_as_is_and_upgraded_by_a_writer(tmp_path):
    db = tmp_path / "old.sqlite"
    _legacy_store(db)
    before = db.read_bytes()
    with ResultStore(db, readonly=True) as store:   # a reader changes nothing
        assert store.dataframe().empty
    assert db.read_bytes() == before
    with ResultStore(db) as store:                  # a writer upgrades it: version, claims tables, columns
        store.insert(_row("run-a"), owner=Owner.current())
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert c.execute("SELECT count(*) FROM computations").fetchone()[0] == 1


def test_a_field_added_since_the_store_was_written_becomes_a_null_column(tmp_path):
    db = tmp_path / "r.sqlite"
    _populated_store(db)
    with sqlite3.connect(db) as c:   # as if written before ResultRow gained `extra_json`
        c.execute("ALTER TABLE results DROP COLUMN extra_json")
    with ResultStore(db, readonly=True) as store:   # a reader fills it in
        df = store.dataframe()
        assert "extra_json" in df.columns and df["extra_json"].isna().all() and len(df) == 2
    with ResultStore(db) as store:                  # a writer adds the column
        store.insert(_row("run-9", seed=9), owner=Owner.current())
        assert store.dataframe()["extra_json"].notna().sum() == 1
    with sqlite3.connect(db) as c:
        c.execute("ALTER TABLE results ADD COLUMN from_the_future TEXT")
    with pytest.raises(StoreError, match="from_the_future"):
        ResultStore(db, readonly=True)


def test_not_a_database_is_one_line(tmp_path):
    db = tmp_path / "notes.txt"
    db.write_text("hello, this is not sqlite\n" * 100)
    with pytest.raises(StoreError, match="cannot open results store"):
        ResultStore(db, readonly=True)


# --------------------------------------------------------------------------- read-only readers
def _populated_store(db: Path) -> None:
    with ResultStore(db) as store:
        me = Owner.current()
        for seed in (0, 1):
            store.insert(_row(f"run-{seed}", seed=seed), owner=me)


def test_readonly_open_writes_nothing(tmp_path):
    db = tmp_path / "r.sqlite"
    _populated_store(db)
    before, stat = db.read_bytes(), db.stat()
    with ResultStore(db, readonly=True) as store:
        assert len(store.dataframe()) == 2
        with pytest.raises(StoreError, match="read-only"):
            store.claim("run-x", Owner.current())
    assert db.read_bytes() == before and db.stat().st_mtime_ns == stat.st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.sqlite"]  # no -wal, -shm or -journal left behind
    with pytest.raises(StoreError, match="no results store"):
        ResultStore(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()


def test_leaderboard_on_a_readonly_store_in_a_readonly_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "r.sqlite"
    _populated_store(db)
    before, mtime = db.read_bytes(), db.stat().st_mtime_ns
    db.chmod(0o444)
    folder.chmod(0o555)
    try:
        p = mcbench("leaderboard", "--db", str(db), "--out", str(tmp_path / "lb"), "--format", "csv")
        assert p.returncode == 0, p.stderr
        assert "baseline" in p.stdout
    finally:
        folder.chmod(0o755)
        db.chmod(0o644)
    assert db.read_bytes() == before and db.stat().st_mtime_ns == mtime   # meaningful even as root
    assert sorted(x.name for x in folder.iterdir()) == ["r.sqlite"]
