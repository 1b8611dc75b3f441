"""Run ``mcbench run`` in this process with the model work replaced by a stub (for concurrency tests).

Usage: python sweep_driver.py BARRIER_DIR N_PROCS LOG_FILE -- <mcbench run arguments>

Everything of the sweep is real (CLI, plan, store, claims, waiting) except ``Harness.run``, which sleeps
``STUB_RUN_S`` seconds, appends ``run_id pid`` to LOG_FILE (a counter of computations independent of the
store) and returns a made-up row. The process waits until N_PROCS drivers are ready, so sweeps overlap.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

STUB_RUN_S = float(os.environ.get("STUB_RUN_S", "0.6"))


def fake_row(harness, spec):
    from mcbench.benchmarks.record import ResultRow

    values = {}
    for f in dataclasses.fields(ResultRow):
        t = f.type if isinstance(f.type, str) else f.type.__name__
        values[f.name] = 1.0 if t.startswith("float") else 1 if t.startswith(("int", "bool")) else "x"
    values.update(run_id=spec.run_id, method=spec.method, family="reference", task=harness.task.name,
                  dataset=harness.dataset_label, budget=harness.cfg.budget, seed=spec.seed,
                  config_hash=spec.config_hash, timestamp_utc=f"{time.time():.6f}", git_commit="abc")
    return ResultRow(**values)


def main() -> None:
    barrier, n, log = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    args = sys.argv[sys.argv.index("--") + 1:]
    from mcbench.benchmarks import measure, runner
    from mcbench.benchmarks.cli import app

    def stub_run(self, spec):
        time.sleep(STUB_RUN_S)
        with open(log, "a") as f:
            f.write(f"{spec.run_id} {os.getpid()}\n")
        return fake_row(self, spec)

    runner.Harness.run = stub_run
    runner.Harness.run_with_controls = lambda self, spec: [stub_run(self, spec)]  # the sweep's entry point
    measure.matmul_gflops = lambda *a, **k: 1.0
    barrier.mkdir(parents=True, exist_ok=True)
    (barrier / f"ready-{os.getpid()}").touch()
    deadline = time.time() + 120
    while len(list(barrier.glob("ready-*"))) < n and time.time() < deadline:
        time.sleep(0.05)
    app(args, prog_name="mcbench")


if __name__ == "__main__":
    main()
