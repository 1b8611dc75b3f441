#!/usr/bin/env python
"""Every paper configuration of the catalog's complexity tables: the paper's parameters and mult-adds
next to ours, counted on the meta device (nothing allocated, no training); with ``--latency`` also the
batch-1 CPU latency of each configuration at the paper's input size.

    python scripts/complexity_report.py                        # markdown table (counts only, a second)
    python scripts/complexity_report.py --latency --json results/snapshot/complexity.json

The JSON file is what the site shows on each paper's page (the site never builds a network). Latency
is of freshly initialised weights (the configurations are never trained here, so there is no accuracy),
in deploy form (``benchmarks/deploy.py``: BN folded, best memory format, frozen TorchScript where it
matches), one image, ``--threads`` pinned, with the harness's allocator. It is comparable only to
another figure in this file (same machine, same run), not to the papers' phone or GPU timings.
"""
from __future__ import annotations

if __name__ == "__main__":  # before torch loads, as the CLI does
    import sys as _sys

    if "--latency" in _sys.argv:
        from mcbench.benchmarks.allocator import reexec_with_allocator

        reexec_with_allocator()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from mcbench.benchmarks.complexity import build_paper_config, count  # noqa: E402
from mcbench.catalog.loader import load_catalog  # noqa: E402

SCHEMA = 1


def _m(v: float | None) -> str:
    return "—" if v is None else f"{v / 1e6:.2f}M"


def _off(ours: float, paper: float | None) -> str:
    return "—" if paper is None else f"{(ours - paper) / paper * 100:+.1f}%"


@torch.inference_mode()
def latency_b1(key: str, method_config: dict, input_chw: tuple[int, int, int], num_classes: int,
               warmup: int, runs: int) -> dict:
    """p50/p90 ms of the deploy form of a freshly initialised configuration at batch 1."""
    from mcbench.benchmarks import deploy, measure

    torch.manual_seed(0)
    ch, h, w = input_chw
    model = build_paper_config(key, method_config, ch, (h, w), num_classes, device="cpu")
    x = torch.randn(1, ch, h, w)
    form = deploy.deploy(model, x)
    for _ in range(warmup):
        form.module(x)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        form.module(x)
        samples.append((time.perf_counter() - t0) * 1e3)
    stats = measure.summarize(samples)
    return {"latency_ms_p50_cpu_b1": stats.p50_ms, "latency_ms_p90_cpu_b1": stats.p90_ms,
            "latency_samples_cpu_b1": stats.n, "latency_path_cpu_b1": form.path}


def report(latency: bool, threads: int, warmup: int, runs: int, log=lambda m: None) -> dict:
    """Counts (and latencies) of every configuration in the catalog, with the setting they were taken in."""
    from mcbench.benchmarks import allocator, measure
    from mcbench.benchmarks.runner import git_commit

    torch.set_num_threads(threads)
    out: dict = {"schema": SCHEMA, "git_commit": git_commit(), "torch_version": torch.__version__,
                 "counted": "meta device, batch 1; MACs = torch.utils.flop_counter FLOPs / 2 (conv and matmul)",
                 "configs": []}
    if latency:
        out["latency"] = {"cpu_model": measure.cpu_model(), "cpu_threads": threads, "allocator": allocator.describe(),
                          "warmup": warmup, "runs": runs, "weights": "freshly initialised (seed 0), untrained",
                          "load_average_1_5_15_before": list(os.getloadavg())}
    for p in sorted(load_catalog().papers.values(), key=lambda p: p.key):
        for c in p.complexity:
            ch, h, w = c.input
            ours = count(build_paper_config(p.key, c.method_config, ch, (h, w), c.num_classes), ch, (h, w))
            row = {"key": p.key, "name": c.name, "input": list(c.input), "num_classes": c.num_classes,
                   "params_count": ours.params_count, "macs": ours.macs,
                   "params_count_paper": c.params, "macs_paper": c.mult_adds}
            if latency:
                log(f"  timing {p.key} {c.name}")
                row.update(latency_b1(p.key, c.method_config, (ch, h, w), c.num_classes, warmup, runs))
            out["configs"].append(row)
    if latency:
        out["latency"]["load_average_1_5_15_after"] = list(os.getloadavg())
    return out


def markdown(rep: dict) -> str:
    timed = "latency" in rep
    head = "| paper | configuration | params paper | params ours | Δ | mult-adds paper | mult-adds ours | Δ |"
    rule = "|---|---|---|---|---|---|---|---|"
    if timed:
        head, rule = head + " p50 b1 ms (CPU) |", rule + "---|"
    lines = [head, rule]
    for r in rep["configs"]:
        line = (f"| {r['key']} | {r['name']} | {_m(r['params_count_paper'])} | {_m(r['params_count'])} | "
                f"{_off(r['params_count'], r['params_count_paper'])} | {_m(r['macs_paper'])} | {_m(r['macs'])} | "
                f"{_off(r['macs'], r['macs_paper'])} |")
        if timed:
            line += f" {r['latency_ms_p50_cpu_b1']:.1f} |"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", action="store_true", help="also time each configuration at batch 1 (minutes)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30, help="timed calls per configuration")
    ap.add_argument("--json", type=Path, default=None, help="also write the report as JSON (the site reads "
                                                            "results/snapshot/complexity.json)")
    a = ap.parse_args()
    rep = report(a.latency, a.threads, a.warmup, a.runs, log=lambda m: print(m, file=sys.stderr))
    print(markdown(rep))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rep, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {a.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
