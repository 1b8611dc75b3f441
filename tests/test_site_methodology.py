"""The methodology page is generated from the recipe data: every number on it comes from the recipes the rows
were run with (their ``config_json``), the task table, the seeds and the latency columns; none is typed by hand.

Also: per-row configs on paper pages. Fast: no mkdocs build, no torch (the task table is plain data).
"""
from __future__ import annotations

import dataclasses
import html
import json
import re

import pandas as pd

from mcbench.benchmarks.tasks import TASKS
from mcbench.site import methodology
from mcbench.site.sources import SITE_DIR

from test_site import fake_runs

_SPLIT = re.compile(r"[\s|()\[\]/×:;=]+")
_NUM = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$|^\d+(\.\d+)?$")


def numbers(text: str) -> set[float]:
    """Standalone numbers in ``text`` ("15,000", "0.005", "3"); not digits inside words (top-1, p50, int8)."""
    out = set()
    for token in _SPLIT.split(text):
        token = token.strip(".,*`'\"")
        if _NUM.match(token):
            out.add(float(token.replace(",", "")))
    return out


def data_numbers(obj) -> set[float]:
    """Every number in a (nested) recipe/task record, including those written inside its strings."""
    if isinstance(obj, bool):
        return set()
    if isinstance(obj, (int, float)):
        return {float(obj)}
    if isinstance(obj, str):
        return numbers(obj)
    if isinstance(obj, dict):
        return set().union(*(data_numbers(v) for v in obj.values())) if obj else set()
    if isinstance(obj, (list, tuple)):
        return set().union(*(data_numbers(v) for v in obj)) if obj else set()
    return set()


def _visible(markdown: str) -> str:
    return re.sub(r"<[^>]+>", " ", markdown).replace("&#46;", ".")


def _runs_with_configs() -> pd.DataFrame:
    runs = fake_runs([("baseline", "reference", 90.0, 400_000, 1.0, True),
                      ("zhu2017prune", "pruning", 89.0, 400_000, 1.0, False)])
    task = TASKS["fmnist"].describe()
    recipe = dataclasses.asdict(TASKS["fmnist"].recipe("default"))
    method_cfg = {"baseline": {}, "zhu2017prune": {"final_sparsity": 0.8, "frequency_steps": 10}}
    runs["config_json"] = [json.dumps({"task": task, "recipe": recipe, "method_config": method_cfg[m]})
                           for m in runs["method"]]
    return runs


def test_every_number_on_the_methodology_page_comes_from_the_recipe_data() -> None:
    runs = _runs_with_configs()
    setup = methodology.snippet(runs, "results/snapshot")
    hand = (SITE_DIR / "docs" / "methodology.md").read_text(encoding="utf-8")
    hand = hand.split("## Environment of the committed results")[0]   # the environment is the machine's record
    page = _visible(hand.replace("<!-- mcbench:setup -->", setup))
    configs = [json.loads(c) for c in runs["config_json"]]
    allowed = (data_numbers(configs) | {float(s) for s in runs["seed"]} | {float(runs["seed"].nunique())}
               | {1.0, 64.0})   # latency batch sizes: the columns latency_ms_p50_cpu_b1/_b64 of the rows
    shown = numbers(page)
    assert shown, "the page shows no numbers at all"
    assert shown <= allowed, f"numbers not from the recipe data: {sorted(shown - allowed)}"
    # and the recipe's figures are there: the default budget's training images, epochs, batch, lr, the widths
    recipe = configs[0]["recipe"]
    for v in (recipe["train_subset"], recipe["epochs_scratch"], recipe["batch_size"], recipe["lr"], 0.8):
        assert float(v) in shown, v
    assert "32/64/128" in page and "64/128/256" in page and "16/32/64" in page   # baseline, teacher, student
    assert f"{recipe['train_subset']:,}" in page and "5,000 train images held out for validation" in page


def test_a_changed_recipe_changes_the_page() -> None:
    runs = _runs_with_configs()
    cfg = json.loads(runs["config_json"].iloc[0])
    cfg["recipe"]["train_subset"] = 12_345
    runs["config_json"] = json.dumps(cfg)
    original = _runs_with_configs()
    before = f"{json.loads(original['config_json'].iloc[0])['recipe']['train_subset']:,}"
    changed = methodology.snippet(runs, "x")
    assert "12,345" in changed and changed.count(before) < methodology.snippet(original, "x").count(before)


def test_without_rows_the_task_table_is_shown() -> None:
    text = methodology.snippet(None, "results/snapshot")
    assert "benchmarks/tasks.py" in text and f"{TASKS['fmnist'].recipe('default').train_subset:,}" in text
    assert set(TASKS) <= set(re.findall(r"<code>([a-z0-9-]+)</code>", html.unescape(text)))


def test_method_settings_are_listed_per_row() -> None:
    text = html.unescape(methodology.snippet(_runs_with_configs(), "x"))
    assert "<code>final_sparsity</code> = 0.8" in text and "<code>frequency_steps</code> = 10" in text
