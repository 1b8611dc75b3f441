"""Subprocess helpers for CLI tests (exit codes and stderr as a user sees them)."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def mcbench(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "mcbench.benchmarks.cli", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=timeout, env=env)


def rows(db: Path) -> list[tuple]:
    if not Path(db).exists():
        return []
    with sqlite3.connect(db) as c:
        try:
            return c.execute("SELECT run_id, method, seed, timestamp_utc FROM results ORDER BY run_id").fetchall()
        except sqlite3.OperationalError:
            return []
