"""``mcbench reproduce KEY``: run a paper's own setting (``catalog/settings/KEY.yaml``).

The setting gives the paper's dataset as a task, its architectures, method config and two
budgets (``cpu``, ``paper``). The method and the references its claims need run through the
same :class:`~mcbench.benchmarks.runner.Harness` and store as the shared leaderboard, on:

- the paper's dataset when a local copy loads (``mnist``, ``cifar10``, ``imagefolder`` from
  ``--data-dir``; ``fmnist`` from the Debian package), or
- the setting's ``substitute`` task otherwise, and then every row's dataset says so, e.g.
  ``fashion-mnist (substitute for mnist)``.

Every row carries ``setting`` = ``KEY/BUDGET`` (``""`` marks the shared leaderboard), so a
claim is compared with the rows of its own setting (``site/claims.py``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mcbench.benchmarks.archs import ArchSpec
from mcbench.benchmarks.data import DatasetMissingError, Splits
from mcbench.benchmarks.record import ResultRow
from mcbench.benchmarks.runner import SweepConfig, run_sweep
from mcbench.benchmarks.tasks import Recipe, Task, get_task
from mcbench.catalog.settings import BUDGET_NAMES, PaperSetting, load_setting
from mcbench.methods.registry import REGISTRY

SUBSTITUTE_SUFFIX = "substitute for"


@dataclass(frozen=True)
class Resolved:
    """The data a setting runs on: the task (with the setting's architectures and recipes) and splits."""

    task: Task
    splits: Splits
    dataset_label: str
    substituted: bool
    why: str            # why the substitute was used ("" when the paper's data was found)


def references_for(key: str) -> list[str]:
    """The reference rows a method's claims are measured against (see ``catalog/model.py``)."""
    return ["student"] if REGISTRY.get(key).family == "distillation" else ["baseline"]


def setting_task(setting: PaperSetting, base: Task) -> Task:
    """``base`` (the dataset's task) with the setting's architectures and its two budgets' recipes."""
    specs = {role: ArchSpec(a.name, a.widths, a.depth, a.dropout) for role, a in setting.architectures.items()}
    recipes = {b: Recipe(**setting.budgets[b]) for b in BUDGET_NAMES}
    variants = {**base.variants, **{r: s for r, s in specs.items() if r not in Task.ROLES}}
    return dataclasses.replace(
        base, baseline=specs.get("baseline", base.baseline), teacher=specs.get("teacher", base.teacher),
        student=specs.get("student", base.student), recipes=recipes, variants=variants,
        description=f"{base.description}; paper setting {setting.key}: {setting.title}")


def resolve(setting: PaperSetting, data_dir: Path | None) -> Resolved:
    """The paper's dataset if a local copy loads, else the substitute (and the reason)."""
    paper_task = get_task(setting.task)
    if paper_task.needs_data_dir and data_dir is None:
        why = f"no --data-dir given for {setting.task}"
    else:
        try:
            splits = paper_task.loader(data_dir)
            return Resolved(setting_task(setting, paper_task), splits, splits.label, False, "")
        except DatasetMissingError as e:
            if data_dir is not None:  # the user pointed at the paper's data: a wrong folder is an error
                raise
            why = str(e)
    sub_task = get_task(setting.substitute)
    splits = sub_task.loader(None)
    label = f"{splits.label} ({SUBSTITUTE_SUFFIX} {setting.task})"
    return Resolved(setting_task(setting, sub_task), splits, label, True, why)


def reproduce(key: str, *, budget: str = "cpu", data_dir: Path | None = None, seeds: int = 1,
              db: Path = Path("runs/mcbench.sqlite"), cache_dir: Path = Path("cache/checkpoints"),
              device: str = "cpu", threads: int = 2, force: bool = False, settings_root: Path | None = None,
              log: Callable[[str], None] = print, resolved: Resolved | None = None) -> list[ResultRow]:
    """Run paper ``key``'s setting at ``budget``; returns the new rows (stored in ``db``)."""
    if budget not in BUDGET_NAMES:
        raise ValueError(f"unknown budget {budget!r} for a paper setting; expected one of {', '.join(BUDGET_NAMES)}")
    setting = load_setting(key, settings_root)
    REGISTRY.get(key)  # a setting for an unregistered method fails here, before any data is read
    res = resolved or resolve(setting, data_dir)
    if res.substituted:
        log(f"{setting.task} not available ({res.why}); running on the substitute, every row labelled {res.dataset_label!r}")
    cfg = SweepConfig(task=res.task.name, budget=budget, methods=references_for(key) + [key],
                      seeds=list(range(seeds)), threads=threads, db=db, cache_dir=cache_dir, data_dir=data_dir,
                      device=device, dataset_label=res.dataset_label, overrides={key: dict(setting.method_config)},
                      force=force, setting=setting.name(budget))
    log(f"{setting.name(budget)}: {setting.title}")
    return run_sweep(cfg, splits=res.splits, log=log, task=res.task)
