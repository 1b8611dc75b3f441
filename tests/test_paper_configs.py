"""Compact networks at the paper's own configuration, built on the meta device, against the paper's table."""
from __future__ import annotations

from pathlib import Path

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


SNAPSHOT_COMPLEXITY = Path(__file__).resolve().parents[1] / "results" / "snapshot" / "complexity.json"


@pytest.mark.skipif(not SNAPSHOT_COMPLEXITY.is_file(), reason="no results/snapshot/complexity.json")
def test_the_snapshot_shows_todays_counts_for_every_configuration():
    """The site shows complexity.json's counts: they must be what the code counts now, for every configuration
    the catalog lists (a record or a network changed without rerunning the report fails here)."""
    import json

    data = json.loads(SNAPSHOT_COMPLEXITY.read_text())
    stored = {(r["key"], r["name"]): r for r in data["configs"]}
    assert set(stored) == {(k, c.name) for k, c in FIGURES}
    for key, fig in FIGURES:
        c, h, w = fig.input
        ours = count(build_paper_config(key, fig.method_config, c, (h, w), fig.num_classes), c, (h, w))
        row = stored[(key, fig.name)]
        assert (row["params_count"], row["macs"]) == (ours.params_count, ours.macs), (key, fig.name)
        assert row["params_count_paper"] == fig.params and row["macs_paper"] == fig.mult_adds, (key, fig.name)


def test_a_configuration_builds_on_cpu_for_timing_and_counts_the_same():
    """The report's latency builds the same network with real weights (seed 0), deploys and times it."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "complexity_report.py"
    spec = importlib.util.spec_from_file_location("complexity_report", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = {"width_multiplier": 0.25, "stride1_layers": 2}
    real = build_paper_config("howard2017mobilenets", cfg, 1, (28, 28), 10, device="cpu")
    assert next(real.parameters()).device.type == "cpu" and next(real.parameters()).abs().sum() > 0
    meta = build_paper_config("howard2017mobilenets", cfg, 1, (28, 28), 10)
    assert count(real, 1, (28, 28)) == count(meta, 1, (28, 28))
    t = mod.latency_b1("howard2017mobilenets", cfg, (1, 28, 28), 10, warmup=1, runs=3)
    assert t["latency_samples_cpu_b1"] == 3 and t["latency_ms_p50_cpu_b1"] > 0
    assert t["latency_path_cpu_b1"].startswith("fp32") and "bn-folded" in t["latency_path_cpu_b1"]
