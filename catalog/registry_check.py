"""The house rule "registry key = BibTeX key", checked both ways.

- every registered method has a catalog entry, whose status is ``implemented``
  and whose family is the method's family;
- every catalog entry marked ``implemented`` has a registered method.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Protocol

from mcbench.catalog.loader import load_with_problems
from mcbench.catalog.model import Catalog
from mcbench.catalog.problems import Problems, show_path

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout (editable install) or site-packages/mcbench


class RegistryLike(Protocol):
    """What the check needs of :class:`methods.registry.Registry`."""

    def keys(self) -> list[str]: ...

    def get(self, key: str) -> Any: ...  # -> MethodEntry (key, family, cls, source_file)


def check_registry(catalog: Catalog, registry: RegistryLike | None = None) -> list[str]:
    """Problems (``path:line: field: message``) between ``catalog`` and ``registry`` (default: REGISTRY)."""
    if registry is None:
        from mcbench.methods.registry import REGISTRY as registry  # noqa: N811 - the one registry
    problems = Problems()
    registered, broken = set(registry.keys()), getattr(registry, "broken", {})
    for why in broken.values():  # "methods/<family>/<key>.py does not import: <error>"
        path, _, reason = why.partition(" does not import: ")
        problems.add(REPO_ROOT / path, 1, "import", f"does not import: {reason}")
    for key in sorted(registered):
        _check_method(key, registry.get(key), catalog, problems)
    for paper in catalog.papers.values():
        if paper.status == "implemented" and paper.key not in registered and paper.key not in broken:
            problems.add(paper.yaml_file or f"{paper.key}.yaml", paper.line_of("status"), "status",
                         f"{paper.key!r} is marked implemented but no method is registered under it "
                         f"(expected methods/{paper.family}/{paper.key}.py; or set status: planned)")
    return problems.lines


def _check_method(key: str, entry: Any, catalog: Catalog, problems: Problems) -> None:
    paper = catalog.papers.get(key)
    source, line = _source_of(entry)
    if paper is None:
        if catalog.root is not None and (catalog.root / "papers" / f"{key}.yaml").exists():
            return  # the record exists but did not load; the loader's problems say why
        problems.add(source, line, "key", f"method {key!r} is registered but the catalog has no entry {key!r} "
                                          f"(add catalog/papers/{key}.bib and catalog/papers/{key}.yaml)")
        return
    if paper.status != "implemented":
        problems.add(paper.yaml_file or source, paper.line_of("status"), "status",
                     f"{paper.status!r} but method {key!r} is registered ({show_path(source)}); "
                     "set status: implemented")
    if paper.family != entry.family:
        problems.add(paper.yaml_file or source, paper.line_of("family"), "family",
                     f"{paper.family!r} but method {key!r} is registered with family {entry.family!r}")


def _source_of(entry: Any) -> tuple[Path, int]:
    """The method's source file and the line of its class statement."""
    path = REPO_ROOT / entry.source_file
    try:
        path = Path(inspect.getsourcefile(entry.cls) or path)
        line = inspect.getsourcelines(entry.cls)[1]
    except (OSError, TypeError):
        line = 1
    return path, line


def validate(root: Path | str | None = None, registry: RegistryLike | None = None,
             check_methods: bool = True) -> list[str]:
    """Every problem of the catalog under ``root``, plus the registry cross-check; empty means valid."""
    catalog, problems = load_with_problems(root)
    if check_methods:
        problems += [p for p in check_registry(catalog, registry) if p not in problems]
    return problems
