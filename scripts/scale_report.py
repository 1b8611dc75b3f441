"""Figures for the scale issue, measured side by side in one run (run it on a quiet machine).

    python scripts/scale_report.py numerics [--samples 3200]   # training speed of each numerics change
    python scripts/scale_report.py scaling [--seeds 2]        # 2 single-thread Dask workers vs 1

``numerics`` trains the task's baseline, teacher and MobileNet v1 (the leaderboard's most expensive model)
on Fashion-MNIST batches, alternating the variants round by round so they share machine conditions:
fp32 contiguous (before), fp32 channels_last (the default now), bf16 autocast + channels_last (opt-in).
``scaling`` runs one fmnist/smoke sweep on a 1-worker and on a 2-worker local Dask cluster (1 thread
each, cold caches) and reports the wall time of the compute phase and of the whole sweep.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mcbench.benchmarks import archs
from mcbench.benchmarks.tasks import get_task

VARIANTS = {"fp32 contiguous": ("fp32", "contiguous"), "fp32 channels_last": ("fp32", "channels_last"),
            "bf16 channels_last": ("bf16", "channels_last")}


def _models(task):
    from mcbench.methods.compact.howard2017mobilenets import MobileNetV1

    return {"baseline": lambda: archs.build(task.arch("baseline"), 1, 10, task.input_size),
            "teacher": lambda: archs.build(task.arch("teacher"), 1, 10, task.input_size),
            "howard2017mobilenets": lambda: MobileNetV1(10, 1, 0.5, 2)}


def _train_seconds(build, x, y, precision: str, fmt: str) -> float:
    torch.manual_seed(0)
    model = build()
    cl = fmt == "channels_last"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    t0 = time.perf_counter()
    for i in range(0, len(x), 64):
        xb = x[i:i + 64].contiguous(memory_format=torch.channels_last) if cl else x[i:i + 64]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(xb).float(), y[i:i + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def numerics(samples: int, rounds: int) -> None:
    torch.set_num_threads(2)
    task = get_task("fmnist")
    splits = task.loader(None)
    x, y = splits.x_train[:samples], splits.y_train[:samples]
    print(f"training {samples} Fashion-MNIST samples per measurement, batch 64, AdamW, 2 threads, {rounds} rounds "
          f"(variants alternate within a round); median seconds")
    for name, build in _models(task).items():
        times = {v: [] for v in VARIANTS}
        for _ in range(rounds):
            for v, (precision, fmt) in VARIANTS.items():
                times[v].append(_train_seconds(build, x, y, precision, fmt))
        base = statistics.median(times["fp32 contiguous"])
        cells = [f"{v} {statistics.median(t):.2f}s ({base / statistics.median(t):.2f}x)" for v, t in times.items()]
        print(f"  {name:<22} " + " | ".join(cells), flush=True)


def scaling(seeds: int, methods: list[str]) -> None:
    from mcbench.benchmarks.parallel import connect
    from mcbench.benchmarks.runner import SweepConfig, run_sweep

    results = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = SweepConfig(task="fmnist", budget="smoke", methods=methods, seeds=list(range(seeds)), threads=1,
                              db=Path(tmp) / "r.sqlite", cache_dir=Path(tmp) / "ckpt")
            cluster = connect(workers)
            marks: dict[str, float] = {}

            def log(msg: str, marks=marks) -> None:
                if msg.startswith("serial measurement phase"):
                    marks["computed"] = time.perf_counter()

            t0 = time.perf_counter()
            try:
                rows = run_sweep(cfg, log=log, cluster=cluster)
            finally:
                cluster.close()
            end = time.perf_counter()
            results[workers] = (marks["computed"] - t0, end - t0, {r.run_id: r.top1_acc_pct for r in rows})
            print(f"  {workers} worker(s): compute phase {results[workers][0]:.1f}s, whole sweep {end - t0:.1f}s, "
                  f"{len(rows)} rows", flush=True)
    (c1, w1, a1), (c2, w2, a2) = results[1], results[2]
    print(f"scaling, 2 vs 1 single-thread worker: compute phase {c1 / c2:.2f}x, whole sweep {w1 / w2:.2f}x; "
          f"accuracies identical: {a1 == a2}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("numerics")
    n.add_argument("--samples", type=int, default=3200)
    n.add_argument("--rounds", type=int, default=3)
    s = sub.add_parser("scaling")
    s.add_argument("--seeds", type=int, default=2)
    s.add_argument("--methods", default="baseline,student,zhu2017prune,jacob2017quantization,he2017channel,"
                                        "hinton2015distilling,teacher")
    a = p.parse_args()
    if a.cmd == "numerics":
        numerics(a.samples, a.rounds)
    else:
        scaling(a.seeds, a.methods.split(","))


if __name__ == "__main__":
    main()
