"""`leaderboard --export` all or nothing, its refusals, git dirty detection, and `--format json|csv` listings."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mcbench.benchmarks import export as snap
from mcbench.benchmarks.runner import git_commit
from mcbench.benchmarks.store import Owner, ResultStore

sys.path.insert(0, str(Path(__file__).parent))
from sweep_driver import fake_row  # noqa: E402


class _H:
    class task:
        name = "digits"

    class cfg:
        budget = "smoke"

    dataset_label = "digits"


class _Spec:
    def __init__(self, method, seed):
        self.run_id, self.method, self.seed, self.config_hash = f"{method}-{seed}", method, seed, "0" * 12


@pytest.fixture(autouse=True)
def _clean_exporting_tree(monkeypatch):
    """The checkout under test may have uncommitted changes: exports here run as from a clean tree (the
    refusal of a dirty exporting tree is tested on its own)."""
    monkeypatch.setattr("mcbench.benchmarks.runner.git_commit", lambda root=None: "abc123def456")


def cli(*args: str):
    """``mcbench ARGS`` in this process (no torch re-import): returncode, stdout, stderr like a subprocess."""
    from typer.testing import CliRunner

    from mcbench.benchmarks.cli import app

    r = CliRunner().invoke(app, list(args))
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception   # an uncaught exception is a traceback for a user
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)


def make_store(db: Path, commit: str = "abc123", methods=("baseline", "student"), seeds=(0, 1)) -> Path:
    with ResultStore(db) as store:
        me = Owner.current()
        for m in methods:
            for s in seeds:
                row = fake_row(_H, _Spec(m, s))
                row.git_commit, row.top1_acc_pct = commit, 90.0 + s
                store.insert(row, owner=me)
    return db


def old_snapshot(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    for name in snap.SNAPSHOT_FILES + snap.RETIRED_FILES:
        (folder / name).write_text(f"previous {name}\n")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def assert_one_line_refusal(p, needle):
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], p.stderr


def test_export_writes_every_file_then_replaces_the_previous_snapshot(tmp_path):
    db = make_store(tmp_path / "r.sqlite")
    folder = tmp_path / "snap"
    old_snapshot(folder)
    p = cli("leaderboard", "--db", str(db), "--out", str(tmp_path / "lb"), "--export", "--snapshot", str(folder))
    assert p.returncode == 0, p.stderr
    assert sorted(listing(folder)) == sorted(snap.SNAPSHOT_FILES)   # same names, no temporaries, runs.json retired
    assert len(pd.read_csv(folder / "runs.csv")) == 4 and len(pd.read_csv(folder / "leaderboard.csv")) == 2
    env = json.loads((folder / "env.json").read_text())
    assert env["rows"] == 4 and env["rows_from_dirty_tree"] == 0 and env["row_git_commits"] == ["abc123"]


def test_killed_export_leaves_the_previous_snapshot_byte_identical(tmp_path, monkeypatch):
    db = make_store(tmp_path / "r.sqlite")
    folder = tmp_path / "snap"
    before = old_snapshot(folder)
    written = []

    def dies_on_third(path, text):
        if len(written) == 2:
            raise KeyboardInterrupt("killed mid-export")
        written.append(path)
        path.write_text(text)

    monkeypatch.setattr(snap, "_write_file", dies_on_third)
    runs = snap.select_runs(db)
    from mcbench.benchmarks.leaderboard import aggregate

    with pytest.raises(KeyboardInterrupt):
        snap.export_snapshot(runs, aggregate(runs), folder, {"cpu_model": "x"})
    assert len(written) == 2
    assert listing(folder) == before   # byte-identical, and the two finished temporaries are gone


@pytest.mark.parametrize("case", ["empty", "missing task", "missing budget", "dirty"])
def test_export_refusals_are_one_line_and_write_nothing(tmp_path, case):
    db = tmp_path / "r.sqlite"
    if case == "empty":
        ResultStore(db).close()
    else:
        make_store(db, commit="abc123-dirty" if case == "dirty" else "abc123")
    folder, out = tmp_path / "snap", tmp_path / "lb"
    before = old_snapshot(folder)
    args = ["leaderboard", "--db", str(db), "--out", str(out), "--export", "--snapshot", str(folder)]
    args += {"missing task": ["--task", "fmnist"], "missing budget": ["--budget", "paper"]}.get(case, [])
    p = cli(*args)
    needle = {"empty": "holds no rows", "missing task": "no rows for task fmnist", "missing budget": "budget paper",
              "dirty": "uncommitted code changes"}[case]
    assert_one_line_refusal(p, needle)
    assert listing(folder) == before and not out.exists()
    if case == "dirty":   # --allow-dirty exports them, and says so in env.json
        p = cli(*args, "--allow-dirty")
        assert p.returncode == 0, p.stderr
        assert json.loads((folder / "env.json").read_text())["rows_from_dirty_tree"] == 4


def test_export_uses_only_the_selected_rows(tmp_path):
    db = make_store(tmp_path / "r.sqlite")
    p = cli("leaderboard", "--db", str(db), "--out", str(tmp_path / "lb"), "--task", "digits", "--budget", "smoke",
                "--export", "--snapshot", str(tmp_path / "snap"), "--format", "json")
    assert p.returncode == 0, p.stderr
    agg = json.loads(p.stdout)   # only JSON on stdout; status lines go to stderr
    assert [r["method"] for r in agg] == ["baseline", "student"] or [r["method"] for r in agg] == ["student", "baseline"]
    assert all(r["n_seeds"] == 2 for r in agg) and "snapshot:" in p.stderr


def test_leaderboard_formats(tmp_path):
    db = make_store(tmp_path / "r.sqlite")
    p = cli("leaderboard", "--db", str(db), "--out", str(tmp_path / "lb"), "--format", "csv")
    assert p.returncode == 0, p.stderr
    from io import StringIO

    df = pd.read_csv(StringIO(p.stdout))
    assert set(df["method"]) == {"baseline", "student"} and (df["top1_acc_pct_mean"] == 90.5).all()
    assert_one_line_refusal(cli("leaderboard", "--db", str(db), "--format", "xml"), "--format")


# --------------------------------------------------------------------------- git dirty detection
def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_git_commit_dirty_means_code_not_generated_results(tmp_path):
    root = tmp_path / "repo"
    for rel in ("benchmarks/x.py", "results/snapshot/runs.csv", "README.md"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("v1\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = git_commit(root)
    assert len(clean) == 12 and not clean.endswith("-dirty")
    (root / "results" / "snapshot" / "runs.csv").write_text("v2\n")     # regenerated results
    (root / "README.md").write_text("new figures\n")
    (root / "runs").mkdir()
    (root / "runs" / "mcbench.sqlite").write_text("db")                  # the store, the site build
    (root / "build" / "site").mkdir(parents=True)
    (root / "build" / "site" / "index.html").write_text("<html>")
    assert git_commit(root) == clean
    (root / "benchmarks" / "new_method.py").write_text("x = 1\n")        # untracked code
    assert git_commit(root) == clean + "-dirty"
    (root / "benchmarks" / "new_method.py").unlink()
    (root / "benchmarks" / "x.py").write_text("v2\n")                    # modified code
    assert git_commit(root) == clean + "-dirty"
    assert git_commit(tmp_path / "nowhere") == "unknown"


# --------------------------------------------------------------------------- listings
def test_methods_piped_shows_every_full_key():
    from mcbench.methods.registry import REGISTRY

    p = subprocess.run(f"{sys.executable} -m mcbench.benchmarks.cli methods | cat", shell=True, capture_output=True,
                       text=True, env=dict(os.environ, COLUMNS="40"))
    assert p.returncode == 0, p.stderr
    keys = [line.split()[0] for line in p.stdout.splitlines() if line.strip()]
    assert keys == REGISTRY.keys() and "…" not in p.stdout


@pytest.mark.parametrize("args", [("methods",), ("tasks",), ("catalog", "list")])
def test_listing_commands_json_and_csv(args):
    p = cli(*args, "--format", "json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert isinstance(data, list) and data
    p = cli(*args, "--format", "csv")
    assert p.returncode == 0, p.stderr
    from io import StringIO

    df = pd.read_csv(StringIO(p.stdout))
    assert len(df) >= len(data) and len(df.columns) >= 3
    if args == ("methods",):
        from mcbench.methods.registry import REGISTRY

        assert [d["key"] for d in data] == REGISTRY.keys() == list(df["key"])


def test_an_export_from_a_dirty_tree_is_refused_unless_allowed(tmp_path, monkeypatch):
    """Clean rows, but the exporting tree has uncommitted changes: its commit would not identify the code the
    site's source links point at, so the export is refused (one line, nothing written); --allow-dirty exports."""
    monkeypatch.setattr("mcbench.benchmarks.runner.git_commit", lambda root=None: "abc123def456-dirty")
    db = make_store(tmp_path / "r.sqlite")
    folder, out = tmp_path / "snap", tmp_path / "lb"
    before = old_snapshot(folder)
    args = ["leaderboard", "--db", str(db), "--out", str(out), "--export", "--snapshot", str(folder)]
    assert_one_line_refusal(cli(*args), "the tree exporting the snapshot has uncommitted code changes")
    assert listing(folder) == before and not out.exists()
    p = cli(*args, "--allow-dirty")
    assert p.returncode == 0, p.stderr
    assert json.loads((folder / "env.json").read_text())["git_commit"] == "abc123def456-dirty"
