"""Compact networks at the paper's own configuration, built on the meta device, against the paper's table."""
from __future__ import annotations

import pytest
import torch

from mcbench.benchmarks.complexity import build_paper_config, count
from mcbench.catalog.loader import load_catalog

FIGURES = [(p.key, c) for p in load_catalog().papers.values() for c in p.complexity]


def test_the_pilots_state_their_tables():
    keys = {k for k, _ in FIGURES}
    assert {"howard2017mobilenets", "sandler2018mobilenetv2"} <= keys


@pytest.mark.parametrize("key,fig", FIGURES, ids=[f"{k}:{c.name}" for k, c in FIGURES])
def test_paper_configuration_matches_the_papers_table(key, fig):
    c, h, w = fig.input
    model = build_paper_config(key, fig.method_config, c, (h, w), fig.num_classes)
    assert next(model.parameters()).device == torch.device("meta")  # nothing allocated
    ours = count(model, c, (h, w))
    for name, mine, paper in (("params", ours.params_count, fig.params), ("mult-adds", ours.macs, fig.mult_adds)):
        if paper is None:  # the paper prints no such figure (the record's note says so)
            continue
        off = abs(mine - paper) / paper * 100
        assert off <= fig.tolerance_pct, (f"{key} {fig.name} ({fig.where}): {name} {mine:,} vs the paper's {paper:,.0f} "
                                          f"({off:.1f}% > {fig.tolerance_pct}%){'; ' + fig.note if fig.note else ''}")


def test_meta_count_equals_a_real_count():
    """flop_counter on meta tensors counts what it counts on real ones."""
    from mcbench.methods.compact.howard2017mobilenets import MobileNetV1

    real = MobileNetV1(10, 1, 0.25, stride1_layers=2)
    meta = build_paper_config("howard2017mobilenets", {"width_multiplier": 0.25, "stride1_layers": 2}, 1, (28, 28), 10)
    assert count(real, 1, (28, 28)) == count(meta, 1, (28, 28))
