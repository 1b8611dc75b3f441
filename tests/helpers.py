"""Shared test helpers: subprocess calls for CLI tests (exit codes and stderr as a user sees them), and a
minimal method context around a recording ``train_fn`` for tests of what a method asks the harness to train."""
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


def recording_context(train_fn, *, widths: tuple[int, ...] = (4, 8), epochs_scratch: int = 1):
    """A MethodContext on 1x8x8 inputs and 3 classes whose every model is an untrained task CNN of ``widths``;
    ``train_fn`` (the test's own) sees what the method hands the harness's training loop."""
    from mcbench.benchmarks import archs
    from mcbench.methods.protocols import MethodContext

    build = lambda: archs.build(archs.ArchSpec("cnn", widths), 1, 3, (8, 8))  # noqa: E731
    return MethodContext(num_classes=3, in_chans=1, input_size=(8, 8), epochs_scratch=epochs_scratch,
                         epochs_finetune=1, train_fn=train_fn, build_student=build, build_baseline=build,
                         load_baseline=build, load_teacher=build, calibration_batches=lambda n=None: [])
