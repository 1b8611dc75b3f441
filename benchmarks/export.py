"""Select result rows for the leaderboard and export the committed snapshot safely.

``select_runs`` reads the store read-only and refuses an empty selection. ``export_snapshot`` refuses rows
produced from a tree with uncommitted code changes (``git_commit`` ending in ``-dirty``), and an export from
such a tree (the snapshot's own ``git_commit``, which the site pins its source links to), unless allowed,
renders every file in memory first, writes them to hidden temporary names in the snapshot folder, and
renames them into place (``os.replace``) only once all are written: an export killed at any point leaves
the previous snapshot's files as they were (at worst a hidden ``.*.tmp`` file beside them).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from mcbench.benchmarks.errors import McbenchError
from mcbench.benchmarks.store import ResultStore

SNAPSHOT_FILES = ("runs.csv", "env.json", "leaderboard.csv")  # the names the site reads
# Written by earlier exports and removed by the next: runs.json held runs.csv's rows a second time (2.4 MB of a
# 4 MB snapshot); the site now makes its JSON download from runs.csv.
RETIRED_FILES = ("runs.json",)
DIRTY_SUFFIX = "-dirty"


class ExportError(McbenchError):
    """The selection or the export is refused (nothing was written)."""


def select_runs(db: Path, task: str | None = None, budget: str | None = None) -> pd.DataFrame:
    """The store's rows for ``task``/``budget`` (None: all), read through a read-only connection."""
    if not Path(db).exists():
        raise ExportError(f"no results store at {db}; run `mcbench run` first")
    with ResultStore(db, readonly=True) as store:
        runs = store.dataframe()
    if runs.empty:
        raise ExportError(f"results store {db} holds no rows; run `mcbench run` first")
    selected = runs
    if task:
        selected = selected[selected["task"] == task]
    if budget:
        selected = selected[selected["budget"] == budget]
    if selected.empty:
        have = ", ".join(sorted({f"{t}/{b}" for t, b in zip(runs["task"], runs["budget"])}))
        want = f"task {task or '*'} / budget {budget or '*'}"
        raise ExportError(f"results store {db} has no rows for {want} (it has task/budget: {have})")
    return selected.reset_index(drop=True)


def dirty_rows(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["git_commit"].astype(str).str.endswith(DIRTY_SUFFIX)]


def check_clean(runs: pd.DataFrame, allow_dirty: bool, environment: dict | None = None) -> None:
    """Refuse rows from a dirty tree, and an export from a dirty tree, unless ``allow_dirty``."""
    if allow_dirty:
        return
    dirty = dirty_rows(runs)
    if len(dirty):
        commits = ", ".join(sorted(set(dirty["git_commit"].astype(str)))[:3])
        raise ExportError(f"{len(dirty)} of {len(runs)} rows were produced from a tree with uncommitted code changes "
                          f"({commits}); commit and rerun them with --force, or pass --allow-dirty")
    here = str((environment or {}).get("git_commit") or "")
    if here.endswith(DIRTY_SUFFIX):
        raise ExportError(f"the tree exporting the snapshot has uncommitted code changes ({here}), so its commit "
                          "would not identify the code; commit them first, or pass --allow-dirty")


def snapshot_env(runs: pd.DataFrame, environment: dict) -> dict:
    """``env.json``: the exporting environment plus totals over the exported rows."""
    env = dict(environment)
    env.update(wall_time_s_total=float(runs["wall_time_s"].sum()), peak_mem_bytes_max=int(runs["peak_mem_bytes"].max()),
               rows=len(runs), rows_from_dirty_tree=len(dirty_rows(runs)),
               row_git_commits=sorted(set(runs["git_commit"].astype(str))),
               first_run_utc=runs["timestamp_utc"].min(), last_run_utc=runs["timestamp_utc"].max())
    return env


def render_snapshot(runs: pd.DataFrame, agg: pd.DataFrame, env: dict) -> dict[str, str]:
    """Every snapshot file's text, keyed by file name (nothing written yet)."""
    return {
        "runs.csv": runs.to_csv(index=False),
        "env.json": json.dumps(env, indent=1, default=str),
        "leaderboard.csv": agg.to_csv(index=False),
    }


def _write_file(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_atomically(folder: Path, files: dict[str, str]) -> list[Path]:
    """Write all ``files`` to temporary names in ``folder``, then rename each into place; on failure remove the temporaries."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmps = {name: folder / f".{name}.{os.getpid()}.tmp" for name in files}
    try:
        for name, text in files.items():
            _write_file(tmps[name], text)
    except BaseException:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
        raise
    for name, tmp in tmps.items():
        os.replace(tmp, folder / name)
    return [folder / name for name in files]


def export_snapshot(runs: pd.DataFrame, agg: pd.DataFrame, folder: Path, environment: dict,
                    allow_dirty: bool = False) -> list[Path]:
    """Refuse dirty rows or a dirty exporting tree (unless allowed), then replace the snapshot files in ``folder`` all together."""
    check_clean(runs, allow_dirty, environment)
    written = write_atomically(folder, render_snapshot(runs, agg, snapshot_env(runs, environment)))
    for name in RETIRED_FILES:          # only after the new files are in place: a refused export changes nothing
        (Path(folder) / name).unlink(missing_ok=True)
    return written


__all__ = ["ExportError", "SNAPSHOT_FILES", "RETIRED_FILES", "select_runs", "check_clean", "dirty_rows", "snapshot_env",
           "render_snapshot", "write_atomically", "export_snapshot"]
