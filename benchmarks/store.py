"""Results store: SQLite (stdlib), one row per (method, task, budget, seed, config hash).

Safe for careless and concurrent use:

- **Schema version.** ``PRAGMA user_version`` holds ``record.SCHEMA_VERSION``. A store of a newer version (or
  with columns ``ResultRow`` lacks) is refused with one line saying what to do; an older one is upgraded in
  place by a writer (versions only add tables and columns; old rows get NULL) and read as it is by a reader.
- **Read-only readers.** ``ResultStore(path, readonly=True)`` opens with the SQLite URI ``mode=ro``: it never
  creates, converts or writes anything, so ``leaderboard`` works on a read-only file in a read-only folder.
  The store uses the rollback journal (not WAL) for that reason: a WAL database cannot be read from a
  read-only folder without its ``-shm`` file.
- **Claims.** A sweep claims a row (table ``claims``: run id, owner id, pid, host, start and heartbeat times)
  in a ``BEGIN IMMEDIATE`` transaction before running it, and releases the claim in the same transaction
  that stores the row. A second sweep skips rows claimed by a live owner and waits for them. A claim is
  reclaimed when its owner is dead: on the same host, its pid no longer runs; on any host, its heartbeat is
  older than ``STALE_AFTER_S`` (owners refresh it every ``HEARTBEAT_S``).
- **Computation log.** Every stored row also appends one line to ``computations`` (run id, owner, pid, host,
  start and finish times), so ``--force`` can mean "computed after this sweep began" (two concurrent forced
  sweeps compute each row once) and a test can count how often each row was computed.

Each row is inserted in its own transaction after its run has finished, so a sweep killed at any point
leaves only complete rows; rerunning skips them.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd

from mcbench.benchmarks.errors import McbenchError
from mcbench.benchmarks.record import SCHEMA_VERSION, ResultRow

BUSY_TIMEOUT_S = 60.0   # how long a statement waits for another process's write lock
HEARTBEAT_S = 30.0      # how often an owner refreshes its claim's heartbeat
STALE_AFTER_S = 600.0   # a claim whose heartbeat is older than this is reclaimed, whatever the host


class StoreError(McbenchError):
    """The store cannot be opened or used (schema mismatch, unreadable file, lock timeout)."""


def _sql_type(f: dataclasses.Field) -> str:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "TEXT")
    for py, sql in (("bool", "INTEGER"), ("int", "INTEGER"), ("float", "REAL")):
        if t.startswith(py):
            return sql
    return "TEXT"


FIELDS = dataclasses.fields(ResultRow)
DDL = [
    "CREATE TABLE IF NOT EXISTS results ("
    + ", ".join(f"{f.name} {_sql_type(f)}" for f in FIELDS)
    + ", PRIMARY KEY (run_id), UNIQUE (method, task, budget, seed, config_hash))",
    "CREATE TABLE IF NOT EXISTS claims (run_id TEXT PRIMARY KEY, owner TEXT NOT NULL, pid INTEGER NOT NULL, "
    "hostname TEXT NOT NULL, started_unix REAL NOT NULL, heartbeat_unix REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS computations (run_id TEXT NOT NULL, owner TEXT NOT NULL, pid INTEGER NOT NULL, "
    "hostname TEXT NOT NULL, started_unix REAL NOT NULL, finished_unix REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS computations_run ON computations (run_id, finished_unix)",
]


@dataclass(frozen=True)
class Owner:
    """Who runs a sweep: a fresh id per sweep, plus the pid and host used to tell whether it is alive."""
    id: str
    pid: int
    hostname: str

    @classmethod
    def current(cls) -> "Owner":
        return cls(uuid.uuid4().hex[:12], os.getpid(), socket.gethostname())


@dataclass(frozen=True)
class Claim:
    run_id: str
    owner: str
    pid: int
    hostname: str
    started_unix: float
    heartbeat_unix: float

    def describe(self) -> str:
        return f"pid {self.pid} on {self.hostname} (sweep {self.owner}, since {time.strftime('%H:%M:%S', time.localtime(self.started_unix))})"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def claim_is_stale(claim: Claim, now: float, hostname: str) -> bool:
    if now - claim.heartbeat_unix > STALE_AFTER_S:
        return True
    return claim.hostname == hostname and not pid_alive(claim.pid)


class ResultStore:
    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = self._open()
            self._check_schema()
            if not readonly:
                self._leave_wal()
        except (sqlite3.Error, StoreError) as e:
            if self._conn is not None:
                self._conn.close()
            if isinstance(e, StoreError):
                raise
            raise StoreError(f"cannot open results store {self.path}: {e}") from None

    # ------------------------------------------------------------------ opening
    def _open(self) -> sqlite3.Connection:
        if self.readonly:
            if not self.path.is_file():
                raise StoreError(f"no results store at {self.path}; run `mcbench run` first")
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                                   isolation_level=None, check_same_thread=False)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # fails now on a non-database file
            return conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return conn

    def _leave_wal(self) -> None:
        """Switch a store written in WAL mode to the rollback journal (readable from read-only folders)."""
        if self._conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            try:
                self._conn.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.OperationalError:
                pass  # another process holds it open; a later writer converts it

    def _check_schema(self) -> None:
        conn = self._conn
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if "results" not in tables and not self.readonly:
            with self.transaction():
                for stmt in DDL:
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        if "results" not in tables:
            raise StoreError(f"{self.path} is not an mcbench results store (no results table)")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"results store {self.path} has schema version {version}, this mcbench reads up to version "
                f"{SCHEMA_VERSION}: use the newer mcbench that wrote it, or pass a new --db (or move it aside)")
        have = {r[1] for r in conn.execute("PRAGMA table_info(results)")}
        unknown = sorted(have - {f.name for f in FIELDS})
        if unknown:
            raise StoreError(f"results store {self.path} has columns this mcbench does not know ({', '.join(unknown[:5])}): "
                             f"it was written by a newer mcbench; update, or pass a new --db")
        if not self.readonly and (version < SCHEMA_VERSION or have != {f.name for f in FIELDS}):
            self._upgrade()  # older versions differ only by added tables and columns

    def _upgrade(self) -> None:
        """Bring an older store up to ``SCHEMA_VERSION``: claims tables, columns added to ``ResultRow`` since (NULL in old rows)."""
        with self.transaction() as c:   # re-read under the write lock: a concurrent opener may have done it
            for stmt in DDL:
                c.execute(stmt)
            have = {r[1] for r in c.execute("PRAGMA table_info(results)")}
            for f in FIELDS:
                if f.name not in have:
                    c.execute(f"ALTER TABLE results ADD COLUMN {f.name} {_sql_type(f)}")
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` (takes the write lock now, waiting up to the busy timeout) ... ``COMMIT``."""
        if self.readonly:
            raise StoreError(f"results store {self.path} is open read-only")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise StoreError(f"results store {self.path} stayed locked for {BUSY_TIMEOUT_S:.0f}s ({e})") from None
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # ------------------------------------------------------------------ rows
    def has(self, run_id: str) -> bool:
        return self._conn.execute("SELECT 1 FROM results WHERE run_id = ?", (run_id,)).fetchone() is not None

    def is_done(self, run_id: str, fresh_after: float | None) -> bool:
        """Stored, and (when ``fresh_after`` is given) computed after that time."""
        if fresh_after is None:
            return self.has(run_id)
        last = self._conn.execute("SELECT MAX(finished_unix) FROM computations WHERE run_id = ?", (run_id,)).fetchone()[0]
        return last is not None and last >= fresh_after and self.has(run_id)

    def insert(self, row: ResultRow, replace: bool = False, owner: Owner | None = None,
               started_unix: float | None = None) -> None:
        """Store ``row`` (replacing a stored one of the same id), log the computation and drop our claim, atomically.

        ``replace`` is kept for callers of the old API; a row of the same id holds the same identity, so
        the newer computation always replaces it and an insert never fails on a duplicate.
        """
        d = row.to_dict()
        cols, marks = ", ".join(d), ", ".join("?" for _ in d)
        owner = owner or Owner.current()
        now = time.time()
        with self.transaction() as c:
            c.execute(f"INSERT OR REPLACE INTO results ({cols}) VALUES ({marks})", tuple(d.values()))
            c.execute("INSERT INTO computations VALUES (?, ?, ?, ?, ?, ?)",
                      (row.run_id, owner.id, owner.pid, owner.hostname, started_unix or now, now))
            c.execute("DELETE FROM claims WHERE run_id = ? AND owner = ?", (row.run_id, owner.id))

    def dataframe(self) -> pd.DataFrame:
        df = pd.read_sql_query("SELECT * FROM results", self._conn)
        df = df.reindex(columns=[f.name for f in FIELDS])  # columns added since the store was written: NULL
        df = df.sort_values(["task", "budget", "method", "seed"], kind="stable").reset_index(drop=True)
        if "compression_real" in df:
            df["compression_real"] = df["compression_real"].astype(bool)
        return df

    def computations(self) -> pd.DataFrame:
        """The computation log: one line per stored computation of a row."""
        return pd.read_sql_query("SELECT * FROM computations ORDER BY finished_unix", self._conn)

    # ------------------------------------------------------------------ claims
    def claims(self) -> list[Claim]:
        return [Claim(*r) for r in self._conn.execute("SELECT * FROM claims ORDER BY started_unix")]

    def claim(self, run_id: str, owner: Owner, fresh_after: float | None = None,
              log=None) -> tuple[str, Claim | None]:
        """Try to take ``run_id`` for ``owner``: ``("done", None)``, ``("busy", their_claim)`` or ``("claimed", None)``.

        Done: already stored (and computed after ``fresh_after`` when given). Busy: a live owner holds it.
        A claim whose owner is dead is removed and taken over (``log`` is told).
        """
        now = time.time()
        with self.transaction() as c:
            if self.is_done(run_id, fresh_after):
                return "done", None
            row = c.execute("SELECT * FROM claims WHERE run_id = ?", (run_id,)).fetchone()
            if row is not None:
                held = Claim(*row)
                if held.owner == owner.id:
                    return "claimed", None
                if not claim_is_stale(held, now, owner.hostname):
                    return "busy", held
                c.execute("DELETE FROM claims WHERE run_id = ?", (run_id,))
                if log:
                    log(f"  reclaiming {run_id} from {held.describe()}: owner is gone")
            c.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?, ?)",
                      (run_id, owner.id, owner.pid, owner.hostname, now, now))
        return "claimed", None

    def release(self, run_id: str, owner: Owner) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM claims WHERE run_id = ? AND owner = ?", (run_id, owner.id))

    def heartbeat(self, owner: Owner) -> None:
        with self.transaction() as c:
            c.execute("UPDATE claims SET heartbeat_unix = ? WHERE owner = ?", (time.time(), owner.id))

    @contextmanager
    def heartbeats(self, owner: Owner, every_s: float = HEARTBEAT_S) -> Iterator[None]:
        """Refresh ``owner``'s claims every ``every_s`` seconds from a background thread (own connection)."""
        stop = threading.Event()

        def beat() -> None:
            with ResultStore(self.path) as store:
                while not stop.wait(every_s):
                    try:
                        store.heartbeat(owner)
                    except (StoreError, sqlite3.Error):
                        pass  # a missed beat is retried; staleness needs STALE_AFTER_S of them
        thread = threading.Thread(target=beat, name="mcbench-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)


__all__ = ["ResultStore", "StoreError", "Owner", "Claim", "pid_alive", "claim_is_stale",
           "BUSY_TIMEOUT_S", "HEARTBEAT_S", "STALE_AFTER_S"]
