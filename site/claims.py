"""Per-claim status: the paper's figure (a claim's ``compare`` block) against our measured one, like with like.

Two comparisons, kept apart:

- **paper setting** (:func:`judge`): the rows ``mcbench reproduce KEY`` wrote for the paper's own
  setting (``catalog/settings/KEY.yaml``: the paper's architecture and dataset), against the
  reference rows (``baseline`` or ``student``) of the same setting. Only this gives a verdict,
  and only when the data is the paper's: on a stated substitute dataset a figure that depends on
  the data gets no verdict, with the reason in words. Figures fixed by the architecture and the
  method's config (parameter, MAC and size ratios) do not depend on the data and are compared.
- **shared task** (:func:`shared`): the method's rows on the shared leaderboard (``setting`` ""),
  our figure for comparing methods with each other; never a verdict on the paper's claim.

Reads aggregated rows (``benchmarks.leaderboard.aggregate``) only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from mcbench.catalog.model import Claim, reference_method

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
    "size_ratio_encoded": ("stored-size reduction, the method's encoded file vs baseline torch.save, measured", "x"),
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


SHARED = ""                                # the ``setting`` of shared-leaderboard rows
DATA_FREE = ("params_ratio", "macs_ratio", "size_ratio_disk")   # fixed by architecture + config, not by the data
SUBSTITUTE_MARK = "(substitute for"


@dataclass(frozen=True)
class Verdict:
    status: str
    ours: float | None = None
    setting: Setting | None = None
    reason: str = ""          # why this status, in words a reader understands
    scope: str = "paper setting"
    acc_delta_pp: float | None = None   # top-1 change against the same reference at that point (beside a ratio)


def pick_setting(agg: pd.DataFrame | None, method: str, reference: str = BASELINE
                 ) -> tuple[pd.Series, pd.Series | None] | None:
    """The method's aggregated row and its reference row (``baseline``, ``student``, a control, another method):
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
    """The aggregated row of ``reference`` (baseline, student, control:<name>, method:<key>) beside ``row``."""
    target = reference_method(reference, str(row["method"]))
    b = agg[(agg["method"] == target) & (agg["task"] == row["task"]) & (agg["budget"] == row["budget"])
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
    if measure == "size_ratio_encoded":
        return _ratio(_num(base, "size_bytes_disk_mean"), _num(row, "size_bytes_encoded_mean"))
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


def _rows(agg: pd.DataFrame | None, setting: str) -> pd.DataFrame | None:
    if agg is None or agg.empty or "method" not in agg.columns:
        return None
    tags = agg["setting"].fillna("") if "setting" in agg.columns else pd.Series("", index=agg.index)
    return agg[tags == setting]


def shared(claim: Claim, method: str, agg: pd.DataFrame | None) -> Verdict:
    """Our figure for ``claim``'s measure on the shared leaderboard: for comparing methods, no verdict."""
    if claim.compare is None:
        return Verdict(NOT_COMPARABLE, reason="the claim has no measure mcbench can take", scope="shared task")
    picked = pick_setting(_rows(agg, SHARED), method, claim.compare.reference)
    if picked is None:
        return Verdict(NOT_YET_RUN, reason="the method has no rows on the shared leaderboard", scope="shared task")
    row, base = picked
    where = Setting(str(row["task"]), str(row["dataset"]), str(row["budget"]), int(row["n_seeds"]))
    ours = measure_value(claim.compare.measure, row, base, claim.compare.reference)
    return Verdict(NOT_COMPARABLE, ours, where, scope="shared task", acc_delta_pp=_acc_beside(claim, row, base),
                   reason=f"measured on the shared {where.dataset} task with the task's own networks, not the "
                          "paper's setting: for comparing methods, not a verdict on the paper")


def judge(claim: Claim, method: str, agg: pd.DataFrame | None, *, index: int | None = None,
          setting=None) -> Verdict:
    """The status of claim number ``index`` of the paper registered as ``method``, on its paper setting.

    ``setting`` is the paper's :class:`~mcbench.catalog.settings.PaperSetting` (None: it has none).
    """
    if claim.compare is None:
        return Verdict(NOT_COMPARABLE, reason="the claim has no measure mcbench can take (see its conditions)")
    if setting is None or index is None or index not in setting.claims:
        return Verdict(NOT_COMPARABLE, reason="no paper setting of ours reproduces this claim's experiment, and "
                                              "the shared task is a different setting: no verdict")
    fixed = (f"no verdict: the figure is set by the configuration, not an outcome of the method "
             f"({claim.compare.fixed_by})") if claim.compare.fixed_by else ""
    for budget in ("paper", "cpu"):  # the paper's full budget first
        rows = _rows(agg, f"{setting.key}/{budget}")
        picked = pick_setting(rows, method, claim.compare.reference)
        if picked is not None:
            break
    else:
        if fixed:   # known before any run: such a figure is never judged
            return Verdict(NOT_COMPARABLE, reason=fixed)
        return Verdict(NOT_YET_RUN, reason=f"no rows for its paper setting yet: run `mcbench reproduce {setting.key}`")
    row, base = picked
    where = Setting(str(row["task"]), str(row["dataset"]), str(row["budget"]), int(row["n_seeds"]))
    if base is None:
        return Verdict(NOT_YET_RUN, None, where, reason=f"the {claim.compare.reference} rows of the setting are missing")
    cmp_ = claim.compare
    ours = measure_value(cmp_.measure, row, base, cmp_.reference)
    beside = _acc_beside(claim, row, base)
    if fixed:
        return Verdict(NOT_COMPARABLE, ours, where, acc_delta_pp=beside, reason=fixed)
    if SUBSTITUTE_MARK in where.dataset and cmp_.measure not in DATA_FREE:
        ours_data = where.dataset.split(" (")[0]
        return Verdict(NOT_COMPARABLE, ours, where, acc_delta_pp=beside,
                       reason=f"the paper's {claim.dataset} result is compared with our {ours_data} substitute: "
                              "different data, no verdict")
    if not cmp_.tolerance_why:
        return Verdict(NOT_COMPARABLE, ours, where, acc_delta_pp=beside,
                       reason="the catalog record does not say why its tolerance is what it is: no verdict")
    reason = f"paper setting {setting.key}/{where.budget} on {where.dataset}"
    if SUBSTITUTE_MARK in where.dataset:
        reason += " (a ratio fixed by the architecture and config, not by the data)"
    return Verdict(status_of(ours, cmp_.expected, cmp_.tolerance, cmp_.measure), ours, where, reason=reason,
                   acc_delta_pp=beside)


def _acc_beside(claim: Claim, row: pd.Series, base: pd.Series | None) -> float | None:
    """The top-1 change at the point a ratio claim is measured (None for an accuracy claim): a compression
    figure is never shown without what it cost."""
    if claim.compare is None or claim.compare.measure == "acc_delta_pp" or base is None:
        return None
    return measure_value("acc_delta_pp", row, base, claim.compare.reference)
