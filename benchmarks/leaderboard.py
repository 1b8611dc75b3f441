"""Aggregate result rows over seeds (pandas) and draw Pareto plots (matplotlib).

Reads rows only; never runs a model. The site generator uses the same functions.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


GROUP = ["task", "dataset", "budget", "setting", "method", "family"]  # setting: "" = shared leaderboard
# measurement settings: rows measured under different ones are never averaged (one output row per setting)
SETTINGS = ["cpu_threads", "device"]
# numeric columns reported as mean and std over seeds
NUMERIC = [
    "top1_acc_pct", "val_top1_acc_pct", "params_count", "params_nonzero", "bits_per_weight_effective",
    "size_bytes_theoretical", "size_bytes_disk", "size_bytes_gzip", "macs", "flops", "macs_ratio_vs_baseline",
    "latency_ms_p50_cpu_b1", "latency_ms_p90_cpu_b1", "latency_ms_p50_cpu_b64", "latency_ms_p90_cpu_b64",
    "speedup_cpu_b1", "speedup_cpu_b64", "latency_ms_p50_cuda_b1", "latency_ms_p50_cuda_b64",
    "train_gflops_per_s", "matmul_gflops_per_s", "wall_time_s", "peak_mem_bytes",
    "size_bytes_encoded", "encoded_top1_acc_pct",
    "latency_ms_std_cpu_b1", "latency_ms_std_cpu_b64",
    "train_seconds_total", "train_epochs_total", "train_samples_total", "upstream_train_seconds", "upstream_train_samples",
    "recall_at_1_pct",  # retrieval tasks only (top-1 is NaN there)
]
# columns that are constant within a group and carried through unchanged
CARRIED = ["compression_real", "storage_real", "compute_real", "encoded_format", "compression_note", "quant_engine",
           "data_free",
           "cpu_model", "torch_version", "allocator",
           "control_kind",  # a control row ("<key>:<kind>") is its own method, so it never mixes with its parent
           "level_knob", "level_value"]  # the compression level a row was made at (from extra_json; see levels())


def json_object(text) -> dict:
    """A row's JSON column (``extra_json``, ``config_json``) as a dict; ``{}`` when empty, not JSON or not an object."""
    if not isinstance(text, str) or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def levels(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``level_knob`` / ``level_value`` columns taken from each row's ``extra_json``: the knob a
    method's compression level is set by ("channel_ratio", "sparsity", "bits") and its value; empty / NaN for
    rows that are not a level of a curve (references, controls such as ``random-reinit``)."""
    if "extra_json" not in runs.columns or runs.empty:
        return runs
    extra = runs["extra_json"].map(json_object)
    knob = extra.map(lambda e: str(e.get("level_knob") or ""))
    value = pd.to_numeric(extra.map(lambda e: e.get("level_value")), errors="coerce")
    return runs.assign(level_knob=knob, level_value=value)


def with_setting(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows stored before paper settings existed belong to the shared leaderboard (``setting`` "")."""
    if "setting" in runs.columns:
        return runs.assign(setting=runs["setting"].fillna(""))
    return runs.assign(setting="")


def latest_configs(runs: pd.DataFrame) -> pd.DataFrame:
    """Keep, per (task, dataset, budget, method), only the rows of the most recently run config.

    A changed recipe or method config gets a new config hash; older rows stay in the
    store (nothing is deleted) but must not be averaged with the new ones.
    """
    if runs.empty or "config_hash" not in runs.columns:
        return runs
    runs = with_setting(runs)
    newest = runs.groupby(GROUP + ["config_hash"], dropna=False)["timestamp_utc"].max().reset_index()
    keep = newest.sort_values("timestamp_utc").groupby(GROUP, dropna=False).tail(1)[GROUP + ["config_hash"]]
    return runs.merge(keep, on=GROUP + ["config_hash"], how="inner")


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, dataset, budget, method) of the latest config and per measurement setting
    (``cpu_threads``, ``device``): ``<col>_mean``, ``<col>_std``, ``n_seeds``.

    Rows measured with another thread count or on another device are never averaged together (since
    schema 2 both are in the config hash, so the latest config holds one setting; older rows may mix).
    std is the sample standard deviation (ddof=1); it is NaN for a single seed.
    Rows are sorted by task, budget, then mean test accuracy (best first).
    """
    if runs.empty:
        return pd.DataFrame(columns=GROUP + SETTINGS + ["n_seeds"])
    runs = levels(latest_configs(with_setting(runs)))
    missing = [c for c in GROUP if c not in runs.columns]
    if missing:
        raise ValueError(f"result rows lack columns {missing}")
    num = [c for c in NUMERIC if c in runs.columns]
    keys = GROUP + [c for c in SETTINGS if c in runs.columns]
    g = runs.groupby(keys, dropna=False, sort=False)
    stats = g[num].agg(["mean", "std"])
    stats.columns = [f"{c}_{s}" for c, s in stats.columns]
    carried = g[[c for c in CARRIED if c in runs.columns]].first()
    out = pd.concat([g.size().rename("n_seeds"), stats, carried], axis=1).reset_index()
    return out.sort_values(["task", "budget", "top1_acc_pct_mean"], ascending=[True, True, False]).reset_index(drop=True)


def markdown_table(agg: pd.DataFrame) -> str:
    """The leaderboard as a GitHub-flavoured markdown table (README), figures rounded for display only."""
    def pm(r, col, fmt):
        std = r[f"{col}_std"]
        return fmt.format(r[f"{col}_mean"]) + ("" if pd.isna(std) else " ± " + fmt.format(std))

    head = ["method", "family", "top-1 % (test)", "params (nonzero)", "disk bytes", "gzip bytes", "MACs",
            "MACs ratio (theor.)", "p50 ms b1", "p50 ms b64", "speedup b1 (meas.)", "speedup b64 (meas.)", "compression"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in agg.iterrows():
        cells = [r["method"], r["family"], pm(r, "top1_acc_pct", "{:.2f}"), f"{r['params_nonzero_mean']:,.0f}",
                 f"{r['size_bytes_disk_mean']:,.0f}", f"{r['size_bytes_gzip_mean']:,.0f}", f"{r['macs_mean']:,.0f}",
                 f"{r['macs_ratio_vs_baseline_mean']:.2f}x", pm(r, "latency_ms_p50_cpu_b1", "{:.3f}"),
                 pm(r, "latency_ms_p50_cpu_b64", "{:.2f}"), f"{r['speedup_cpu_b1_mean']:.2f}x",
                 f"{r['speedup_cpu_b64_mean']:.2f}x", "real" if r["compression_real"] else "simulated"]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def rich_table(agg: pd.DataFrame, n_runs: int):
    """The leaderboard as a rich table for the terminal (figures rounded for display only)."""
    from rich.table import Table

    table = Table(title=f"mcbench leaderboard ({n_runs} runs)")
    for col in ("task", "budget", "method", "top-1 % (mean ± std)", "n", "params nz", "disk B", "MACs",
                "p50 b1 ms", "p50 b64 ms", "speedup b1/b64", "MACs ratio", "real"):
        left = col in ("task", "budget", "method")
        table.add_column(col, justify="left" if left else "right", no_wrap=left)
    for _, r in agg.iterrows():
        std = "" if pd.isna(r["top1_acc_pct_std"]) else f" ± {r['top1_acc_pct_std']:.2f}"
        table.add_row(r["task"], r["budget"], r["method"], f"{r['top1_acc_pct_mean']:.2f}{std}", str(r["n_seeds"]),
                      f"{r['params_nonzero_mean']:,.0f}", f"{r['size_bytes_disk_mean']:,.0f}", f"{r['macs_mean']:,.0f}",
                      f"{r['latency_ms_p50_cpu_b1_mean']:.3f}", f"{r['latency_ms_p50_cpu_b64_mean']:.2f}",
                      f"{r['speedup_cpu_b1_mean']:.2f}x / {r['speedup_cpu_b64_mean']:.2f}x",
                      f"{r['macs_ratio_vs_baseline_mean']:.2f}x", "real" if r["compression_real"] else "simulated")
    return table


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


__all__ = ["GROUP", "SETTINGS", "aggregate", "latest_configs", "markdown_table", "rich_table", "pareto_front",
           "pareto_plot", "plots_for"]
