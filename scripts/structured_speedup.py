#!/usr/bin/env python
"""Measured speedup against MACs reduction, batch 64, for every structured pruning method (issue #18's goal:
speedup >= 0.8 x the MACs reduction).

    .venv/bin/python scripts/structured_speedup.py [--shape-task fmnist] [--threads 2] [--runs 30] [--json out.json]

Each structured method (and each of its level controls) is run by the digits/smoke harness; digits and
fmnist share the task CNN (``CNN_BASE``, global average pooling), so the pruned network, channels removed
for real, runs unchanged on the ``--shape-task`` input (fmnist: 1x28x28). Latency is then measured as the
harness does (``benchmarks/deploy.py``: BN folded, the fastest checked frozen form; ``measure.latency_pair_cpu``:
alternating calls against the deploy-form baseline of the same architecture, untrained weights: latency does
not depend on their values). MACs come from ``torch.utils.flop_counter`` at the same shape.
``efficiency = speedup_b64 / macs_reduction``; the goal is >= 0.8. The load average is printed: figures
from a shared machine say so.
"""
from __future__ import annotations

if __name__ == "__main__":  # before torch loads
    from mcbench.benchmarks.allocator import reexec_with_allocator

    reexec_with_allocator()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from mcbench.benchmarks import deploy, measure  # noqa: E402

GOAL = 0.8


@dataclass
class SpeedupRow:
    method: str
    macs: int
    baseline_macs: int
    macs_reduction: float          # baseline MACs / method MACs
    latency_ms_p50_b64: float
    baseline_latency_ms_p50_b64: float
    speedup_b64: float             # baseline p50 / method p50, both in deploy form
    efficiency: float              # speedup / MACs reduction (goal >= 0.8)
    deploy_path: str


def speedup_row(name: str, model: nn.Module, baseline: nn.Module, example: torch.Tensor, runs: int,
                warmup: int = 5) -> SpeedupRow:
    """One structured model against the baseline architecture at ``example``'s shape (deploy form, alternating)."""
    model, baseline = model.cpu().eval(), baseline.cpu().eval()
    form, base = deploy.deploy(model, example), deploy.deploy(baseline, example)
    stats, base_stats = measure.latency_pair_cpu(form.module, base.module, example, warmup, runs)
    one = example[:1]
    macs = measure.macs_from_flops(measure.count_flops(model, one))
    base_macs = measure.macs_from_flops(measure.count_flops(baseline, one))
    reduction = base_macs / max(1, macs)
    speedup = base_stats.p50_ms / stats.p50_ms
    return SpeedupRow(name, macs, base_macs, reduction, stats.p50_ms, base_stats.p50_ms, speedup,
                      speedup / reduction, form.path)


def structured_methods() -> list[str]:
    from mcbench.methods.registry import REGISTRY
    return [k for k in REGISTRY.keys() if REGISTRY.get(k).family == "pruning" and getattr(REGISTRY.get(k).cls,
                                                                                           "structured", False)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape-task", default="fmnist", help="task whose input shape the latency is measured at")
    ap.add_argument("--methods", default="", help="comma-separated keys (default: every structured pruning method)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30, help="timed batch-64 calls per model")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from mcbench.benchmarks.runner import Harness, SweepConfig, plan
    from mcbench.benchmarks.tasks import get_task

    shape = get_task(a.shape_task)
    example = torch.randn(64, shape.in_chans, *shape.input_size)
    methods = a.methods.split(",") if a.methods else structured_methods()
    root = Path(tempfile.mkdtemp(prefix="speedup-"))
    cfg = SweepConfig(task="digits", budget="smoke", seeds=[0], threads=a.threads, db=root / "r.sqlite",
                      cache_dir=root / "ckpt", methods=methods)
    h = Harness(cfg, log=lambda *_: None)
    torch.manual_seed(0)
    baseline = h.build("baseline").eval()
    print(f"load average {os.getloadavg()} on {os.cpu_count()} CPUs; {a.threads} threads; "
          f"input {tuple(example.shape)} ({a.shape_task} shape); {measure.cpu_model()}")
    rows = []
    for spec in plan(cfg, h.task, h.dataset_label):
        out = h.compress(spec)
        for name, c in [(spec.method, out), *((f"{spec.method}:{k}", v) for k, v in out.controls.items())]:
            torch.set_num_threads(a.threads)
            r = speedup_row(name, c.model, baseline, example, a.runs)
            rows.append(r)
            print(f"{r.method:40s} MACs /{r.macs_reduction:5.2f}  speedup b64 {r.speedup_b64:5.2f}  "
                  f"efficiency {r.efficiency:4.2f} {'ok' if r.efficiency >= GOAL else 'BELOW 0.8'}  ({r.deploy_path})",
                  flush=True)
    if a.json:
        a.json.write_text(json.dumps({"load_average": os.getloadavg(), "threads": a.threads,
                                      "rows": [asdict(r) for r in rows]}, indent=1))


if __name__ == "__main__":
    main()
