"""A claim may be compared against a method's control row or another method's row."""
from __future__ import annotations

import pandas as pd
import pytest

from mcbench.catalog.model import reference_method, reference_problem
from mcbench.site import claims as cl


def _agg(rows):
    cols = ["task", "dataset", "budget", "method", "family", "n_seeds", "top1_acc_pct_mean", "params_count_mean",
            "params_nonzero_mean", "macs_mean", "latency_ms_p50_cpu_b1_mean", "speedup_cpu_b1_mean"]
    return pd.DataFrame([("fmnist", "fashion-mnist", "default", *r) for r in rows], columns=cols)


AGG = _agg([
    ("baseline", "reference", 3, 90.0, 1000, 1000, 400, 1.0, 1.0),
    ("mittal2018recovering", "pruning", 3, 88.6, 250, 250, 100, 0.5, 2.0),
    ("mittal2018recovering:l1", "pruning", 3, 89.0, 250, 250, 100, 0.4, 2.5),
    ("zhu2017prune", "pruning", 3, 89.5, 1000, 200, 400, 1.0, 1.0),
])


@pytest.mark.parametrize("ref", ["baseline", "student", "control:l1", "control:random-init", "method:zhu2017prune"])
def test_reference_vocabulary_accepts(ref):
    assert reference_problem(ref) is None


@pytest.mark.parametrize("ref", ["teacher-ish", "control:", "control:Bad Name", "method:Zhu", "method:", 3, None])
def test_reference_vocabulary_rejects_with_the_allowed_forms(ref):
    problem = reference_problem(ref)
    assert problem and "control:<name>" in problem and "method:<key>" in problem


def test_reference_method_names_the_row():
    assert reference_method("control:l1", "mittal2018recovering") == "mittal2018recovering:l1"
    assert reference_method("method:zhu2017prune", "he2017channel") == "zhu2017prune"
    assert reference_method("student", "hinton2015distilling") == "student"


class _V:
    def __init__(self, ours, status):
        self.ours, self.status = ours, status


def _judge(measure, expected, reference, method="mittal2018recovering"):
    """The reference row a claim resolves to, and our figure against it (the rows of one setting)."""
    row, base = cl.pick_setting(AGG, method, reference)
    ours = None if base is None else cl.measure_value(measure, row, base, reference)
    return _V(ours, cl.status_of(ours, expected, 0.1, measure))


def test_claim_against_a_control_uses_the_control_row():
    v = _judge("acc_delta_pp", -0.4, "control:l1")
    assert v.ours == pytest.approx(88.6 - 89.0) and v.status == cl.REPRODUCED
    assert _judge("acc_delta_pp", -1.4, "baseline").ours == pytest.approx(-1.4)  # the default is unchanged
    assert _judge("speedup_cpu_b1", 0.8, "control:l1").ours == pytest.approx(0.4 / 0.5)  # ratio of the two p50s
    assert _judge("acc_delta_pp", 0.0, "control:random-init").status == cl.NOT_YET_RUN  # no such control row


def test_claim_against_another_method():
    v = _judge("acc_delta_pp", -0.9, "method:zhu2017prune")
    assert v.ours == pytest.approx(88.6 - 89.5) and v.status == cl.REPRODUCED
    assert _judge("params_ratio", 4.0, "method:zhu2017prune").ours == pytest.approx(1000 / 250)
