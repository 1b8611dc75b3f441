"""Where the site's inputs come from: the catalog, the committed results snapshot, the registry.

Both directories can be overridden, for tests and for previewing other data:

- ``MCBENCH_CATALOG_DIR``: a catalog root (``papers/<key>.bib`` + ``.yaml``), default ``<repo>/catalog``;
- ``MCBENCH_RESULTS_DIR``: a snapshot folder holding ``runs.csv`` (or ``runs.json``) and ``env.json``,
  default ``<repo>/results/snapshot``.

A missing snapshot is not an error: the site says "not yet run".
"""
from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout (editable install) or site-packages/mcbench
SITE_DIR = Path(__file__).resolve().parent
MKDOCS_YML = SITE_DIR / "mkdocs.yml"
CATALOG_ENV = "MCBENCH_CATALOG_DIR"
RESULTS_ENV = "MCBENCH_RESULTS_DIR"


def catalog_dir() -> Path:
    return Path(os.environ.get(CATALOG_ENV) or REPO_ROOT / "catalog").resolve()


def results_dir() -> Path:
    return Path(os.environ.get(RESULTS_ENV) or REPO_ROOT / "results" / "snapshot").resolve()


def load_site_catalog(root: Path | None = None):
    """The catalog through the project's loader (raises ``CatalogError`` naming file, line and field)."""
    from mcbench.catalog import load_catalog

    return load_catalog(root or catalog_dir())


def load_runs(folder: Path | None = None) -> pd.DataFrame | None:
    """The snapshot's result rows (``runs.csv``, else ``runs.json``), or None when there is no snapshot."""
    folder = folder or results_dir()
    csv, js = folder / "runs.csv", folder / "runs.json"
    if csv.is_file():
        try:
            return pd.read_csv(csv, keep_default_na=True)
        except pd.errors.EmptyDataError:
            return None
    if js.is_file():
        rows = json.loads(js.read_text(encoding="utf-8") or "[]")
        return pd.DataFrame(rows) if rows else None
    return None


def load_env(folder: Path | None = None) -> dict | None:
    """The free-form environment record of the snapshot (``env.json``), or None."""
    path = (folder or results_dir()) / "env.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8") or "{}")
    return data if isinstance(data, dict) else {"env": data}


def implementations(keys, methods_dir: Path | None = None) -> dict[str, str]:
    """Registry key -> source file (relative to the repo) for every key that is registered.

    Read from the method files' source (``@register(family=...)`` on a class named by its key), not by
    importing them: the site build never imports torch. ``tests/test_site_registry.py`` checks that this
    agrees with the imported registry.
    """
    wanted = set(keys)
    root = methods_dir or SITE_DIR.parent / "methods"
    found: dict[str, str] = {}
    for path in sorted(root.glob("*/*.py")):
        if path.name.startswith("_"):
            continue
        for key in registered_classes(path):
            if key in wanted:
                found.setdefault(key, f"methods/{path.parent.name}/{path.name}")
    return dict(sorted(found.items()))


def registered_classes(path: Path) -> list[str]:
    """Names of the classes in ``path`` decorated with ``@register(...)`` (a file that does not parse: none)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, OSError, UnicodeDecodeError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(_is_register(d) for d in node.decorator_list):
            out.append(node.name)
    return out


def _is_register(dec: ast.expr) -> bool:
    func = dec.func if isinstance(dec, ast.Call) else dec
    return (isinstance(func, ast.Name) and func.id == "register") or (
        isinstance(func, ast.Attribute) and func.attr == "register")


def load_complexity(folder: Path | None = None) -> dict[tuple[str, str], dict]:
    """Our counts (and batch-1 latencies) of the papers' configurations, by (paper key, configuration name),
    from ``complexity.json`` (written by ``scripts/complexity_report.py``); empty when there is none.
    Each entry carries the file's ``latency`` setting (machine, threads, weights) under ``"setting"``."""
    path = (folder or results_dir()) / "complexity.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8") or "{}")
    if not isinstance(data, dict) or not isinstance(data.get("configs"), list):
        raise ValueError(f"{path}: expected an object with a 'configs' list")
    setting = dict(data.get("latency") or {}, git_commit=data.get("git_commit"))
    return {(str(r["key"]), str(r["name"])): dict(r, setting=setting) for r in data["configs"]}


DOWNLOADABLE = ("runs.csv", "runs.json", "leaderboard.csv", "env.json", "complexity.json")


def results_files(folder: Path | None) -> dict[str, bytes]:
    """The snapshot's files offered for download, by name (those that exist); ``runs.json`` is made from
    ``runs.csv`` where the snapshot holds only the CSV (as exports do now)."""
    if folder is None:
        return {}
    files = {name: (folder / name).read_bytes() for name in DOWNLOADABLE if (folder / name).is_file()}
    if "runs.json" not in files and "runs.csv" in files:
        runs = load_runs(folder)
        if runs is not None:
            files["runs.json"] = runs.to_json(orient="records", indent=1).encode("utf-8")
    return files


@dataclass
class SiteInputs:
    catalog: object
    runs: pd.DataFrame | None
    env: dict | None
    implementations: dict[str, str] = field(default_factory=dict)
    results_dir: Path | None = None
    complexity: dict = field(default_factory=dict)


def load_inputs() -> SiteInputs:
    cat = load_site_catalog()
    folder = results_dir()
    return SiteInputs(cat, load_runs(folder), load_env(folder), implementations(cat.papers), folder,
                      load_complexity(folder))
