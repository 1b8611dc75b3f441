"""Compression-level curves: which rows form a method's curve, the compression axis, the line drawn, the CSV."""
from __future__ import annotations

import io
import re

import pandas as pd
import pytest

from mcbench.benchmarks.leaderboard import aggregate
from mcbench.site import plots
from mcbench.site.pages import PLOTS

from test_site import FIXTURE_METHODS, fake_runs, level_runs

SPECS = dict(PLOTS)
PRUNING = plots.FAMILY_COLOURS["pruning"]


@pytest.fixture(scope="module")
def agg() -> pd.DataFrame:
    return aggregate(level_runs(fake_runs(FIXTURE_METHODS)))


def test_levels_join_their_method_and_same_level_controls_stay_apart(agg):
    on = plots.curves(agg)
    assert on == {"zhu2017prune": "zhu2017prune", "zhu2017prune:sparsity50": "zhu2017prune",
                  "zhu2017prune:sparsity95": "zhu2017prune"}
    assert "hinton2015distilling:random-init" not in on and "hinton2015distilling" not in on   # same size: no curve


def test_compression_axis_is_the_ratio_to_the_baseline(agg):
    data = plots.plot_data(agg, SPECS["compression"], {})
    x = dict(zip(data["key"], data["x"]))
    assert x["baseline"] == pytest.approx(1.0)
    assert x["zhu2017prune"] == pytest.approx(400_000 / 80_000)
    assert x["zhu2017prune:sparsity95"] == pytest.approx(400_000 / 20_000)
    lvl = data.set_index("key")
    assert lvl.loc["zhu2017prune:sparsity50", "curve"] == "zhu2017prune" and lvl.loc["zhu2017prune:sparsity50", "level"] == "sparsity50"
    assert lvl.loc["student", "curve"] == "" and lvl.loc["zhu2017prune", "level"] == ""
    back = pd.read_csv(io.StringIO(data.to_csv(index=False)))     # the CSV beside the SVG holds what is drawn
    assert {"curve", "level", "x", "top1_acc_pct"} <= set(back.columns) and len(back) == len(data)


def _lines(svg_text: str, colour: str) -> list[int]:
    """Vertex counts of the solid (undashed) lines drawn in ``colour``."""
    out = []
    for m in re.finditer(r'<path d="([^"]+)"[^>]*style="([^"]+)"', svg_text):
        d, style = m.groups()
        if f"stroke: {colour}" in style and "fill: none" in style and "dasharray" not in style and "stroke-width: 2.2" in style:
            out.append(len(re.findall(r"[ML] ", d)))
    return out


@pytest.mark.parametrize("kind", ["compression", "latency"])
def test_one_line_through_the_three_levels(agg, kind):
    data = plots.plot_data(agg, SPECS[kind], {})
    svg = plots.svg(data, SPECS[kind])
    assert _lines(svg, PRUNING) == [3]
    assert "sparsity95" in svg and "sparsity50" in svg               # each level is named on the plot
    plain = plots.plot_data(aggregate(fake_runs(FIXTURE_METHODS)), SPECS[kind], {})
    assert _lines(plots.svg(plain, SPECS[kind]), PRUNING) == []     # a single level: a point, no line


def test_latency_curve_follows_level_order_not_latency(agg):
    runs = level_runs(fake_runs(FIXTURE_METHODS))
    lat = {"zhu2017prune": 0.6, "zhu2017prune:sparsity50": 0.9, "zhu2017prune:sparsity95": 0.75}
    for m, v in lat.items():
        runs.loc[runs["method"] == m, "latency_ms_p50_cpu_b1"] = v
    data = plots.plot_data(aggregate(runs), SPECS["latency"], {})
    line = data[data["curve"] == "zhu2017prune"].sort_values("level_size_bytes", ascending=False)
    assert list(line["key"]) == ["zhu2017prune:sparsity50", "zhu2017prune", "zhu2017prune:sparsity95"]


def test_pareto_front_direction_follows_the_axis(agg):
    """On a cost axis lower is better; on the compression axis higher is better."""
    comp = plots.plot_data(agg, SPECS["compression"], {})
    front = set(plots._front(comp, higher_x_better=True)["key"])
    assert {"zhu2017prune:sparsity95", "zhu2017prune", "hinton2015distilling"} <= front    # 20x, 5x, best top-1
    assert "baseline" not in front and "student" not in front                              # beaten on both
    lat = plots.plot_data(agg, SPECS["latency"], {})
    assert "zhu2017prune:sparsity95" not in set(plots._front(lat)["key"])                  # slower than the student


def test_levels_are_named_as_levels_on_the_leaderboard():
    from mcbench.catalog import load_catalog
    from mcbench.site import pages

    from test_site import FIXTURE_CATALOG

    page = pages.generate(load_catalog(FIXTURE_CATALOG), level_runs(fake_runs(FIXTURE_METHODS))).files["leaderboard/fmnist.md"]
    assert "zhu2017prune (level: sparsity50)" in page.replace("&#40;", "(").replace("&#41;", ")").replace("&#58;", ":")
    assert "Hinton et al. (control: random-init)" in page.replace("&#40;", "(").replace("&#41;", ")").replace("&#58;", ":")


def test_levels_come_from_the_rows_level_knob_not_from_size():
    """With level labels, a control is a level exactly when it shares its parent's knob: a same-size level is
    on the curve, a different-size control of another kind (an l1 criterion at the same level) is not."""
    d = pd.DataFrame({"method": ["m", "m:ratio70", "m:l1", "m:random-reinit", "baseline"],
                      "level_knob": ["channel_ratio", "channel_ratio", "", "", ""],
                      "size_bytes_theoretical_mean": [100.0, 100.0, 60.0, 100.0, 400.0]})
    assert plots.curves(d) == {"m": "m", "m:ratio70": "m"}
    runs = level_runs(fake_runs(FIXTURE_METHODS))
    runs["extra_json"] = ['{"level_knob": "sparsity", "level_value": 0.5}' if m.startswith("zhu2017prune") else "{}"
                          for m in runs["method"]]
    agg = aggregate(runs)
    assert set(agg.loc[agg["method"].str.startswith("zhu2017prune"), "level_knob"]) == {"sparsity"}
    assert set(plots.curves(agg)) == {"zhu2017prune", "zhu2017prune:sparsity50", "zhu2017prune:sparsity95"}
