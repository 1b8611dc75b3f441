"""A sweep SIGKILLed mid-run resumes: nothing lost, nothing duplicated, finished rows untouched."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from helpers import REPO, mcbench, rows

ARGS = ["run", "--task", "digits", "--budget", "smoke", "--seeds", "2",
        "--methods", "baseline,student,hinton2015distilling"]


def test_sigkill_mid_sweep_then_resume(tmp_path):
    db, ckpt = tmp_path / "r.sqlite", tmp_path / "ckpt"
    extra = ["--db", str(db), "--cache-dir", str(ckpt)]
    proc = subprocess.Popen([sys.executable, "-m", "mcbench.benchmarks.cli", *ARGS, *extra], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(rows(db)) < 2 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = rows(db)
    assert 0 < len(before) < 6, f"kill landed outside the sweep ({len(before)} rows)"

    p = mcbench(*ARGS, *extra)
    assert p.returncode == 0, p.stderr
    after = rows(db)
    assert len(after) == 6
    assert len({r[0] for r in after}) == 6
    assert {(m, s) for _, m, s, _ in after} == {(m, s) for m in ("baseline", "student", "hinton2015distilling") for s in (0, 1)}
    assert set(before) <= set(after)  # rows written before the kill are untouched
    assert f"{len(before)} of 6 runs already stored" in p.stdout.replace("\n", " ")
