"""The methodology page's setup sections, generated from the recipes the results were produced with.

Source of every figure: each result row's ``config_json`` (the task with its architectures, the budget's
recipe and the method's config, exactly as run), and for tasks without rows the task table in
:mod:`mcbench.benchmarks.tasks` (plain data; importing it does not import torch). Nothing here is typed in
by hand, so the page cannot disagree with the recipes (``tests/test_site_methodology.py`` checks every number).
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field

import pandas as pd

from mcbench.benchmarks.leaderboard import json_object
from mcbench.site.escape import code, md

DASH = "—"
RECIPE_FIELDS = (  # field of Recipe -> column label
    ("epochs_scratch", "Epochs from scratch"), ("epochs_finetune", "Epochs fine-tuning"),
    ("batch_size", "Batch size"), ("lr", "Learning rate"), ("weight_decay", "Weight decay"),
    ("train_subset", "Training images"), ("latency_warmup", "Latency warm-up calls"),
    ("latency_runs", "Timed calls at batch 1"), ("latency_runs_b64", "Timed calls at batch 64"),
    ("calibration_batches", "Calibration batches"),
)
ROLES = ("baseline", "teacher", "student")
_LAT_COL = re.compile(r"^latency_ms_p50_cpu_b(\d+)$")


@dataclass
class Setup:
    """What the results were run with, per (task, budget): the config of their rows."""

    tasks: dict[str, dict] = field(default_factory=dict)                 # task -> Task.describe()-like dict
    recipes: dict[tuple[str, str], dict] = field(default_factory=dict)   # (task, budget) -> recipe dict
    methods: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # (task, budget, method) -> method_config
    seeds: dict[tuple[str, str], list] = field(default_factory=dict)     # (task, budget) -> seeds run
    latency_batches: list[int] = field(default_factory=list)
    from_rows: bool = False


def config_of(value) -> dict:
    """A row's ``config_json`` as a dict ({} when absent or unreadable)."""
    return json_object(value)


def setup_from(runs: pd.DataFrame | None) -> Setup:
    """The setup of the shared-leaderboard rows; the task table when there are none."""
    s = Setup()
    rows = runs
    if rows is not None and "setting" in rows.columns:
        rows = rows[rows["setting"].fillna("") == ""]
    if rows is not None and not rows.empty and "config_json" in rows.columns:
        s.from_rows = True
        for _, r in rows.iterrows():
            cfg = config_of(r.get("config_json"))
            task, budget, method = str(r["task"]), str(r["budget"]), str(r["method"])
            if isinstance(cfg.get("task"), dict):
                s.tasks.setdefault(task, cfg["task"])
            if isinstance(cfg.get("recipe"), dict):
                s.recipes.setdefault((task, budget), cfg["recipe"])
            if isinstance(cfg.get("method_config"), dict):
                s.methods.setdefault((task, budget, method), cfg["method_config"])
            if "seed" in r.index and pd.notna(r["seed"]):
                seeds = s.seeds.setdefault((task, budget), [])
                if int(r["seed"]) not in seeds:
                    seeds.append(int(r["seed"]))
        s.latency_batches = sorted(int(m.group(1)) for c in rows.columns if (m := _LAT_COL.match(c))
                                   and rows[c].notna().any())
    if not s.tasks:
        from mcbench.benchmarks.tasks import TASKS  # plain data, no torch

        s.from_rows = False
        for name, task in TASKS.items():
            s.tasks[name] = task.describe()
            for budget, recipe in task.recipes.items():
                s.recipes[(name, budget)] = dataclasses.asdict(recipe)
    for key in s.seeds:
        s.seeds[key].sort()
    return s


def number(v) -> str:
    """A recipe value as written: integers with thousands separators, floats in plain notation."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,}" if v.is_integer() and abs(v) >= 1000 else repr(v) if "e" not in repr(v) else f"{v:.10f}".rstrip("0")
    if v is None:
        return DASH
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(number(x) for x in v) + ")"
    return md(v)


def arch_text(spec) -> str:
    if not isinstance(spec, dict):
        return DASH
    widths = spec.get("widths") or []
    text = f"{md(spec.get('name', '?'))}, widths {'/'.join(number(w) for w in widths)}"
    if spec.get("depth", 1) not in (1, None):
        text += f", {number(spec['depth'])} blocks per stage"
    if spec.get("dropout"):
        text += f", dropout {number(spec['dropout'])}"
    return text


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c or DASH for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def tasks_section(s: Setup) -> str:
    rows = []
    for name, t in sorted(s.tasks.items()):
        shape = t.get("input") or []
        rows.append([code(name), md(t.get("description", "")), "×".join(number(x) for x in shape)]
                    + [arch_text(t.get(role)) for role in ROLES])
    return _table(["Task", "Data and splits", "Input (C×H×W)", "Baseline", "Teacher", "Student"], rows)


def recipes_section(s: Setup) -> str:
    keys = sorted(s.recipes)
    header = ["Recipe field"] + [f"{code(t)} / {code(b)}" for t, b in keys]
    rows = []
    for fname, label in RECIPE_FIELDS:
        if not any(fname in s.recipes[k] for k in keys):
            continue
        cells = []
        for k in keys:
            v = s.recipes[k].get(fname)
            cells.append("all" if fname == "train_subset" and v is None and fname in s.recipes[k] else number(v))
        rows.append([label] + cells)
    return _table(header, rows)


def methods_section(s: Setup) -> str:
    rows = []
    for (task, budget, method), cfg in sorted(s.methods.items()):
        if not cfg:
            continue
        rows.append([code(method), f"{code(task)} / {code(budget)}", config_text(cfg)])
    if not rows:
        return "The rows record no method settings.\n"
    return _table(["Method", "Task / budget", "Settings (as run)"], rows)


def config_text(cfg: dict) -> str:
    return "; ".join(f"{code(k)} = {number(v) if not isinstance(v, dict) else md(json.dumps(v, sort_keys=True))}"
                     for k, v in sorted(cfg.items())) or DASH


def snippet(runs: pd.DataFrame | None, results_label: str) -> str:
    """The generated "Setup" part of the methodology page."""
    s = setup_from(runs)
    source = (f"the configuration stored in every result row of {code(results_label)} (the recipe as run)"
              if s.from_rows else f"the task table in {code('benchmarks/tasks.py')} (no results snapshot yet)")
    out = [f"Generated from {source}.\n\n", "### Tasks and architectures\n\n", tasks_section(s),
           "\n### Training recipes per task and budget\n\n",
           "Every network is trained with AdamW and a cosine learning-rate decay to zero. *Training images* is the "
           "number of training images used per epoch, drawn once with a fixed seed; validation and test splits "
           "are complete.\n\n", recipes_section(s)]
    if s.seeds:
        out.append("\n### Seeds\n\n")
        out += [f"- {code(t)} / {code(b)}: seeds {', '.join(number(x) for x in seeds)} "
                f"({number(len(seeds))} per row; tables show the mean and the sample standard deviation over them)\n"
                for (t, b), seeds in sorted(s.seeds.items())]
    if s.latency_batches:
        out.append(f"\n### Latency\n\nCPU latency is timed at batch sizes {', '.join(number(b) for b in s.latency_batches)}"
                   " (the recipe's warm-up and timed calls above).\n")
    out.append("\n### Method settings\n\n" + methods_section(s))
    return "".join(out)
