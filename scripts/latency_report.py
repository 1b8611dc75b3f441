#!/usr/bin/env python
"""Latency figures for the closing note, measured side by side in one run of this script.

    .venv/bin/python scripts/latency_report.py [--task fmnist] [--threads 2] [--json out.json]

1. fp32 baseline (deploy form) batch-64 GFLOP/s = flop_counter FLOPs x 64 / p50, as a fraction of the
   same run's fp32 matmul GFLOP/s (measured just before and just after; their mean).    goal >= 0.6
2. int8 (jacob2017quantization, trained and converted by the smoke harness) vs the deploy-form fp32
   baseline, both in deploy form, alternating calls, at batch 1 and 64.                 goal >= 3x at 64
3. spread (max/min - 1) of the deploy-form fp32 baseline's batch-64 p50 over 5 fresh processes, each
   loading the same trained weights.                                                    goal <= 10%
   ``--compare-allocators`` repeats 3 with glibc's default malloc (no preload, no tunables).

Like the CLI, the script first re-executes itself with the fixed allocator (``benchmarks/allocator.py``;
``MCBENCH_NO_PRELOAD=1`` opts out) and prints which one ran. Numbers from a loaded machine say so:
the load average is printed next to them.
"""
from __future__ import annotations

if __name__ == "__main__":  # before torch loads
    from mcbench.benchmarks.allocator import reexec_with_allocator

    reexec_with_allocator()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from mcbench.benchmarks import allocator, deploy, measure  # noqa: E402

BATCHES = (1, 64)


def _example(task, batch: int) -> torch.Tensor:
    return torch.randn(batch, task.in_chans, *task.input_size)


def models(task_name: str, cache_dir: Path, log) -> tuple:
    """(task, trained fp32 baseline, converted int8 jacob2017quantization model) from the smoke harness."""
    from mcbench.benchmarks.runner import Harness, SweepConfig, plan

    cfg = SweepConfig(task=task_name, budget="smoke", methods=["jacob2017quantization"], seeds=[0],
                      db=cache_dir / "unused.sqlite", cache_dir=cache_dir)
    h = Harness(cfg, log=log)
    baseline = h.trained("baseline", 0)[0].cpu().eval()
    spec = plan(cfg, h.task, h.dataset_label)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8 = h.compress(spec).model.cpu().eval()
    return h.task, baseline, int8


def child_p50(state_path: str, task_name: str, threads: int, runs: int) -> dict:
    """One fresh process: the deploy-form fp32 baseline's batch-64 p50 (alternating with nothing else)."""
    from mcbench.benchmarks.archs import build
    from mcbench.benchmarks.tasks import get_task

    torch.set_num_threads(threads)
    task = get_task(task_name)
    state = torch.load(state_path, weights_only=True)
    model = build(task.baseline, task.in_chans, state["fc.weight"].shape[0], task.input_size)
    model.load_state_dict(state)
    x = _example(task, 64)
    form = deploy.deploy(model.eval(), x)
    fn = form.module
    with torch.inference_mode():
        for _ in range(10):
            fn(x)
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn(x)
            samples.append((time.perf_counter() - t0) * 1e3)
    return {"p50_ms": measure.summarize(samples).p50_ms, "path": form.path, "allocator": allocator.describe()}


def spread(state_path: str, task_name: str, threads: int, runs: int, env: dict, n: int = 5) -> dict:
    p50s, paths, info = [], [], {}
    for _ in range(n):
        out = subprocess.run([sys.executable, __file__, "--child", state_path, "--task", task_name,
                              "--threads", str(threads), "--runs", str(runs)], capture_output=True, text=True,
                             env=env, check=True)
        info = json.loads(out.stdout.strip().splitlines()[-1])
        p50s.append(info["p50_ms"])
        paths.append(info["path"])
    return {"p50_ms": p50s, "spread_max_over_min_minus_1": max(p50s) / min(p50s) - 1, "paths": paths,
            "allocator": info["allocator"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--task", default="fmnist", help="fmnist (default) or digits")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50, help="timed calls per figure (batch 64: at least 30)")
    ap.add_argument("--processes", type=int, default=5)
    ap.add_argument("--cache-dir", type=Path, default=None, help="checkpoint cache (default: a temporary folder)")
    ap.add_argument("--compare-allocators", action="store_true", help="also the spread with glibc's default malloc")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child_p50(a.child, a.task, a.threads, a.runs)))
        return

    torch.set_num_threads(a.threads)
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        cache = a.cache_dir or Path(tmp) / "ckpt"
        task, fp32, int8 = models(a.task, cache, log)
        torch.set_num_threads(a.threads)
        res: dict = {"task": a.task, "threads": a.threads, "allocator": allocator.describe(),
                     "load_average_1_5_15": list(os.getloadavg()), "cpu_model": measure.cpu_model(),
                     "torch": torch.__version__, "runs": a.runs}
        mm_before = measure.matmul_gflops()
        for batch in BATCHES:
            x = _example(task, batch)
            f32 = deploy.deploy(fp32, x)
            q8 = deploy.deploy(int8, x, quantized=True)
            lat_q, lat_f = measure.latency_pair_cpu(q8.module, f32.module, x, 10, a.runs)
            _, lat_eager = measure.latency_pair_cpu(q8.module, fp32, x, 10, a.runs)
            res[f"b{batch}"] = {"fp32_path": f32.path, "int8_path": q8.path, "fp32_p50_ms": lat_f.p50_ms,
                                "int8_p50_ms": lat_q.p50_ms, "int8_speedup_vs_deploy_fp32": lat_f.p50_ms / lat_q.p50_ms,
                                "fp32_eager_p50_ms": lat_eager.p50_ms, "samples": lat_f.n}
        mm_after = measure.matmul_gflops()
        flops64 = measure.count_flops(fp32, _example(task, 64))
        gflops = flops64 / (res["b64"]["fp32_p50_ms"] / 1e3) / 1e9
        matmul = (mm_before + mm_after) / 2
        res.update(matmul_gflops_before_after=[mm_before, mm_after], fp32_b64_gflops=gflops,
                   fp32_b64_fraction_of_matmul=gflops / matmul, flops_b64=flops64)
        state = Path(tmp) / "baseline.pt"
        torch.save(fp32.state_dict(), state)
        env = dict(os.environ)
        res["spread_fresh_processes"] = spread(str(state), a.task, a.threads, a.runs, env, a.processes)
        if a.compare_allocators:
            plain = {k: v for k, v in env.items() if k not in ("LD_PRELOAD", "GLIBC_TUNABLES")}
            plain[allocator.GUARD_ENV] = "1"
            res["spread_fresh_processes_glibc_default"] = spread(str(state), a.task, a.threads, a.runs, plain,
                                                                 a.processes)
        res["load_average_1_5_15_after"] = list(os.getloadavg())
    report(res)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


def report(r: dict) -> None:
    print(f"task {r['task']}, {r['threads']} threads, allocator {r['allocator']}, torch {r['torch']}, {r['cpu_model']}")
    print(f"load average before {r['load_average_1_5_15'][0]:.1f}, after {r['load_average_1_5_15_after'][0]:.1f}")
    print(f"1. fp32 deploy-form b64: {r['fp32_b64_gflops']:.1f} GFLOP/s = {r['fp32_b64_fraction_of_matmul']:.2f} of "
          f"matmul ({sum(r['matmul_gflops_before_after']) / 2:.1f} GFLOP/s)   goal >= 0.6   [{r['b64']['fp32_path']}]")
    for b in BATCHES:
        x = r[f"b{b}"]
        print(f"2. int8 vs deploy-form fp32, batch {b:>2}: {x['int8_speedup_vs_deploy_fp32']:.2f}x "
              f"(fp32 {x['fp32_p50_ms']:.3f} ms -> int8 {x['int8_p50_ms']:.3f} ms; eager fp32 {x['fp32_eager_p50_ms']:.3f} ms; "
              f"{x['samples']} samples)" + ("   goal >= 3x" if b == 64 else "") + f"   [{x['int8_path']}]")
    for key in ("spread_fresh_processes", "spread_fresh_processes_glibc_default"):
        if key in r:
            s = r[key]
            print(f"3. fp32 b64 p50 over {len(s['p50_ms'])} fresh processes ({s['allocator']}): "
                  f"{', '.join(f'{v:.2f} ({p.split()[-1]})' for v, p in zip(s['p50_ms'], s['paths']))} ms; spread {100 * s['spread_max_over_min_minus_1']:.1f}%"
                  + ("   goal <= 10%" if key == "spread_fresh_processes" else ""))


if __name__ == "__main__":
    main()
