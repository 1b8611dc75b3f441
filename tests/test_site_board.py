"""The leaderboard table: bits per activation from the rows' own data, columns in explained groups."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from mcbench.benchmarks.leaderboard import aggregate
from mcbench.site import board
from mcbench.site.fmt import DASH

from test_site import FIXTURE_METHODS, fake_runs


def _row(family: str, extra: dict | None = None, method_config: dict | None = None) -> dict:
    return {"family": family, "extra_json": json.dumps(extra or {}),
            "config_json": json.dumps({"method_config": method_config or {}})}


@pytest.mark.parametrize("row, bits", [
    (_row("quantization", {"activation_bits": 7, "activation_range": [0, 127]}), "7"),     # jacob: reduce_range
    (_row("quantization", {}, {"act_bits": 4, "weight_bits": 4}), "4"),                     # from the config
    (_row("binarization", {"activation_bits_binary_layers": 1}), "1"),                      # XNOR-Net
    (_row("binarization", {}, {"clip_latent_weights": True}), DASH),                        # the row does not say
    (_row("quantization", {"activation_bits": True}), DASH),                                # not a number
    (_row("pruning", {"achieved_sparsity_pruned_layers": 0.8}), "32"),
    (_row("reference"), "32"),
    (_row("distillation"), "32"),
    ({"family": "quantization", "extra_json": float("nan"), "config_json": "not json"}, DASH),
])
def test_activation_bits_from_the_row(row, bits):
    assert board.activation_bits(row) == bits


class _Table(HTMLParser):
    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.head_rows, self.body_rows, self._where, self._row = [], [], None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("thead", "tbody"):
            self._where = tag
        elif tag == "tr":
            self._row = []
            (self.head_rows if self._where == "thead" else self.body_rows).append(self._row)
        elif tag in ("th", "td"):
            self._row.append({"colspan": int(a.get("colspan", 1)), "title": a.get("title"), "text": ""})

    def handle_data(self, data):
        if self._row:
            self._row[-1]["text"] += data


def test_columns_come_in_explained_groups():
    runs = fake_runs(FIXTURE_METHODS)
    runs.loc[runs["method"] == "zhu2017prune", "extra_json"] = json.dumps({"activation_bits": 8})
    d = aggregate(runs).merge(runs.drop_duplicates("method")[["method", "extra_json", "config_json"]], on="method")
    html_table = board.task_table(d, {}, lambda m: None, ("baseline", "student"))
    t = _Table(html_table)
    groups, cols = t.head_rows
    assert [g["text"].strip() for g in groups] == ["", "Accuracy", "Size", "Compute", "Cost", "Real?"]
    assert sum(g["colspan"] for g in groups) == len(cols) == len(t.body_rows[0])
    assert all(c["title"] and len(c["title"]) > 20 for c in cols), [c["text"] for c in cols if not c["title"]]
    names = [c["text"].strip() for c in cols]
    # each column sits under its group
    spans, i = {}, 0
    for g in groups:
        for name in names[i:i + g["colspan"]]:
            spans[name] = g["text"].strip()
        i += g["colspan"]
    assert spans["Bits/act"] == "Compute" and spans["Bits/w"] == "Size" and spans["Speedup b64"] == "Compute"
    assert spans["Train s"] == "Cost" and spans["Storage"] == "Real?"
    act = names.index("Bits/act")
    by_method = {r[0]["text"].strip(): r[act]["text"].strip() for r in t.body_rows}
    assert by_method["zhu2017prune"] == "8" and by_method["*baseline* (reference)"] == "32"
    assert re.search(r"<td[^>]*>\*baseline\* \(reference\)</td>", html_table)   # a Markdown span, rendered by mkdocs


def test_hostile_method_name_is_escaped_in_the_table():
    d = aggregate(fake_runs(FIXTURE_METHODS))
    text = board.task_table(d, {}, lambda m: None, ("baseline",))
    assert "<img" not in text and "&#60;img src&#61;x onerror&#61;alert" in text


def test_paper_setting_section_lists_every_row_of_the_papers_own_settings():
    """A paper's setting rows reach its page even when no claim is compared with them; Δ is against the baseline of
    the same setting, never the shared task's; other papers' settings and shared rows stay out."""
    import pandas as pd

    from mcbench.site.pages import _paper_setting_section

    def row(method, setting, acc, budget="cpu"):
        return {"method": method, "setting": setting, "task": "fmnist", "budget": budget, "dataset": "d<x>",
                "n_seeds": 1, "top1_acc_pct_mean": acc, "top1_acc_pct_std": float("nan"), "config_json": "{}"}

    every = pd.DataFrame([row("baseline", "p2020x/cpu", 88.0), row("p2020x", "p2020x/cpu", 86.5),
                          row("p2020x:ctrl", "p2020x/cpu", 87.0), row("baseline", "", 80.0, "default"),
                          row("p2020x", "", 79.0, "default"), row("q2019y", "q2019y/cpu", 50.0)])
    text = _paper_setting_section("p2020x", every)
    assert "## Paper setting" in text and "mcbench reproduce p2020x" in text
    assert "86.50" in text and "-1.50" in text and "-1.00" in text      # against the setting's 88.0, not 80.0
    assert "79.00" not in text and "50.00" not in text and "-9.00" not in text
    assert "<x>" not in text                                           # escaped
    assert _paper_setting_section("q2019y", every.iloc[3:5]) == "" and _paper_setting_section("p2020x", None) == ""
