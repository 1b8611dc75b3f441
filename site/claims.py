"""Per-claim status: the paper's figure (a claim's ``compare`` block) against our measured one.

``ours`` comes from the aggregated leaderboard rows (``benchmarks.leaderboard.aggregate``) of the
method, against the ``baseline`` rows of the same task, dataset and budget. Reads rows only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from mcbench.catalog.model import Claim

REPRODUCED = "reproduced"
SAME_DIRECTION = "same direction"
NOT_REPRODUCED = "not reproduced"
NOT_COMPARABLE = "not comparable"
NOT_YET_RUN = "not yet run"
CLAIM_STATUSES = (REPRODUCED, SAME_DIRECTION, NOT_REPRODUCED, NOT_COMPARABLE, NOT_YET_RUN)

BASELINE = "baseline"
PREFERRED = ("fmnist", "default")          # the task/budget shown on paper pages when it exists
NEUTRAL = {"acc_delta_pp": 0.0}            # every other measure is a ratio: neutral value 1
MEASURE_LABEL = {
    "acc_delta_pp": ("top-1 change vs baseline", "pp"),
    "params_ratio": ("params reduction (baseline / nonzero)", "x"),
    "macs_ratio": ("MACs reduction, theoretical", "x"),
    "size_ratio_disk": ("size-on-disk reduction, measured", "x"),
    "speedup_cpu_b1": ("CPU speedup at batch 1, measured", "x"),
    "speedup_cpu_b64": ("CPU speedup at batch 64, measured", "x"),
}


@dataclass(frozen=True)
class Setting:
    """Which leaderboard rows a paper page compares against."""

    task: str
    dataset: str
    budget: str
    n_seeds: int


@dataclass(frozen=True)
class Verdict:
    status: str
    ours: float | None = None
    setting: Setting | None = None


def pick_setting(agg: pd.DataFrame | None, method: str, reference: str = BASELINE
                 ) -> tuple[pd.Series, pd.Series | None] | None:
    """The method's aggregated row and its reference row (``baseline`` or ``student``):
    fmnist/default if present, else the first task/budget."""
    if agg is None or agg.empty or "method" not in agg.columns:
        return None
    mine = agg[agg["method"] == method]
    if mine.empty:
        return None
    order = sorted(range(len(mine)), key=lambda i: (
        (str(mine.iloc[i]["task"]), str(mine.iloc[i]["budget"])) != PREFERRED,
        str(mine.iloc[i]["task"]), str(mine.iloc[i]["budget"])))
    for i in order:  # prefer a setting that also has a baseline row
        row = mine.iloc[i]
        base = _reference_for(agg, row, reference)
        if base is not None:
            return row, base
    return mine.iloc[order[0]], None


def _reference_for(agg: pd.DataFrame, row: pd.Series, reference: str = BASELINE) -> pd.Series | None:
    b = agg[(agg["method"] == reference) & (agg["task"] == row["task"]) & (agg["budget"] == row["budget"])
            & (agg["dataset"] == row["dataset"])]
    return None if b.empty else b.iloc[0]


def _num(row: pd.Series | None, col: str) -> float | None:
    if row is None or col not in row.index:
        return None
    try:
        v = float(row[col])
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def measure_value(measure: str, row: pd.Series, base: pd.Series | None, reference: str = BASELINE) -> float | None:
    """Our figure for ``measure`` (see catalog/README.md, "Comparable measures"); None when it cannot be computed.

    Speedups against the baseline use the side-by-side timings of the same run; against
    another reference (the student) they are the ratio of the two rows' mean p50s.
    """
    if measure == "acc_delta_pp":
        m, b = _num(row, "top1_acc_pct_mean"), _num(base, "top1_acc_pct_mean")
        return None if m is None or b is None else m - b
    if measure == "params_ratio":
        return _ratio(_num(base, "params_count_mean"), _num(row, "params_nonzero_mean"))
    if measure == "macs_ratio":
        return _ratio(_num(base, "macs_mean"), _num(row, "macs_mean"))
    if measure == "size_ratio_disk":
        return _ratio(_num(base, "size_bytes_disk_mean"), _num(row, "size_bytes_disk_mean"))
    if measure in ("speedup_cpu_b1", "speedup_cpu_b64"):
        if reference == BASELINE:
            return _num(row, f"{measure}_mean")
        col = "latency_ms_p50_cpu_" + measure.rsplit("_", 1)[1] + "_mean"
        return _ratio(_num(base, col), _num(row, col))
    return None


def status_of(ours: float | None, expected: float, tolerance: float, measure: str) -> str:
    if ours is None:
        return NOT_YET_RUN
    if abs(ours - expected) <= tolerance:
        return REPRODUCED
    neutral = NEUTRAL.get(measure, 1.0)
    if (ours - neutral) * (expected - neutral) > 0:
        return SAME_DIRECTION
    return NOT_REPRODUCED


def judge(claim: Claim, method: str, agg: pd.DataFrame | None) -> Verdict:
    """The status of one claim of the paper registered as ``method``."""
    if claim.compare is None:
        return Verdict(NOT_COMPARABLE)
    picked = pick_setting(agg, method, claim.compare.reference)
    if picked is None:
        return Verdict(NOT_YET_RUN)
    row, base = picked
    setting = Setting(str(row["task"]), str(row["dataset"]), str(row["budget"]), int(row["n_seeds"]))
    ours = measure_value(claim.compare.measure, row, base, claim.compare.reference)
    return Verdict(status_of(ours, claim.compare.expected, claim.compare.tolerance, claim.compare.measure), ours, setting)
