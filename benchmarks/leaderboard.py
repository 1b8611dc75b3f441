"""Aggregate result rows over seeds (pandas) and draw Pareto plots (matplotlib).

Reads rows only; never runs a model. The site generator uses the same functions.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.record import COLUMNS

GROUP = ["task", "dataset", "budget", "method", "family"]
# numeric columns reported as mean and std over seeds
NUMERIC = [
    "top1_acc_pct", "val_top1_acc_pct", "params_count", "params_nonzero", "bits_per_weight_effective",
    "size_bytes_theoretical", "size_bytes_disk", "size_bytes_gzip", "macs", "flops", "macs_ratio_vs_baseline",
    "latency_ms_p50_cpu_b1", "latency_ms_p90_cpu_b1", "latency_ms_p50_cpu_b64", "latency_ms_p90_cpu_b64",
    "speedup_cpu_b1", "speedup_cpu_b64", "latency_ms_p50_cuda_b1", "latency_ms_p50_cuda_b64",
    "train_gflops_per_s", "matmul_gflops_per_s", "wall_time_s", "peak_mem_bytes",
]
# columns that are constant within a group and carried through unchanged
CARRIED = ["compression_real", "compression_note", "quant_engine", "cpu_threads", "cpu_model", "device", "torch_version"]


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, dataset, budget, method): ``<col>_mean``, ``<col>_std`` and ``n_seeds``.

    std is the sample standard deviation (ddof=1); it is NaN for a single seed.
    Rows are sorted by task, budget, then mean test accuracy (best first).
    """
    if runs.empty:
        return pd.DataFrame(columns=GROUP + ["n_seeds"])
    missing = [c for c in GROUP if c not in runs.columns]
    if missing:
        raise ValueError(f"result rows lack columns {missing}")
    num = [c for c in NUMERIC if c in runs.columns]
    g = runs.groupby(GROUP, dropna=False, sort=False)
    stats = g[num].agg(["mean", "std"])
    stats.columns = [f"{c}_{s}" for c, s in stats.columns]
    carried = g[[c for c in CARRIED if c in runs.columns]].first()
    out = pd.concat([g.size().rename("n_seeds"), stats, carried], axis=1).reset_index()
    return out.sort_values(["task", "budget", "top1_acc_pct_mean"], ascending=[True, True, False]).reset_index(drop=True)


def pareto_front(df: pd.DataFrame, cost: str, gain: str = "top1_acc_pct_mean") -> pd.DataFrame:
    """Rows not dominated by another (lower or equal cost and higher or equal gain, one strictly)."""
    d = df.dropna(subset=[cost, gain]).sort_values([cost, gain], ascending=[True, False])
    keep, best = [], float("-inf")
    for idx, row in d.iterrows():
        if row[gain] > best:
            keep.append(idx)
            best = row[gain]
    return d.loc[keep]


def pareto_plot(df: pd.DataFrame, cost: str, path: Path, title: str, xlabel: str, logx: bool = True) -> Path:
    """Scatter accuracy vs ``cost`` with error bars and the Pareto front; saves a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for _, row in df.iterrows():
        marker = "o" if bool(row.get("compression_real", True)) else "x"
        ax.errorbar(row[cost], row["top1_acc_pct_mean"], yerr=0 if pd.isna(row.get("top1_acc_pct_std")) else row["top1_acc_pct_std"],
                    fmt=marker, capsize=3)
        ax.annotate(str(row["method"]), (row[cost], row["top1_acc_pct_mean"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    front = pareto_front(df, cost)
    if len(front) > 1:
        ax.plot(front[cost], front["top1_acc_pct_mean"], "--", color="grey", linewidth=1, label="Pareto front")
        ax.legend(loc="lower right", fontsize=8)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 test accuracy (%)  [x = simulated compression]")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plots_for(agg: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The two Pareto plots (accuracy vs p50 CPU latency at batch 1, accuracy vs bytes on disk) per task/budget."""
    paths = []
    for (task, budget), df in agg.groupby(["task", "budget"]):
        paths.append(pareto_plot(df, "latency_ms_p50_cpu_b1_mean", Path(out_dir) / f"{task}-{budget}-latency.png",
                                 f"{task} ({budget}): accuracy vs CPU latency", "p50 latency, CPU batch 1 (ms, measured)"))
        paths.append(pareto_plot(df, "size_bytes_disk_mean", Path(out_dir) / f"{task}-{budget}-size.png",
                                 f"{task} ({budget}): accuracy vs size on disk", "serialized size on disk (bytes, measured)"))
    return paths


__all__ = ["aggregate", "pareto_front", "pareto_plot", "plots_for", "COLUMNS"]
