"""``mcbench new-method KEY --family F``: the three files of a new method, registered and ready to fill.

Writes, under the repository ``root``:

1. ``catalog/papers/<key>.bib``: a ``@misc`` entry, title/author/eprint ``TODO``;
   ``catalog/papers/<key>.yaml``: a record with the family, ``status: implemented`` and a ``TODO`` summary.
2. ``methods/<family>/<key>.py``: ``@register(family=...) class <key>(<Family>Method)``, each
   protocol method raising ``NotImplementedError("... fill in ...")``.
3. ``tests/methods/test_<key>.py``: exercises the protocol, then fails with a message naming the
   defining property to assert (it fails, it is never skipped, until someone writes it).

Every file is new (nothing shared is edited), so papers can be added in parallel.
Every placeholder starts with ``TODO``: ``mcbench catalog validate`` reports each one with its
file and line until it is filled in, so a half-written entry cannot pass the catalog tests.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mcbench.catalog import templates
from mcbench.methods.registry import is_valid_key  # the one definition of a valid key

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout (editable install) or site-packages/mcbench


class ScaffoldError(ValueError):
    """A refused scaffold (bad key, unknown family, key already taken); the message is one line."""


@dataclass(frozen=True)
class Scaffold:
    """The paths a scaffold created."""

    key: str
    family: str
    created: tuple[Path, ...]


def new_method(key: str, family: str, root: Path | str | None = None) -> Scaffold:
    """Scaffold method ``key`` of ``family`` under ``root`` (default: this repository)."""
    root = Path(root) if root is not None else REPO_ROOT
    _check_key(key)
    _check_family(family)
    _check_free(key, root)
    paths = _paths(key, family, root)
    year = re.search(r"\d{4}", key).group(0)  # type: ignore[union-attr]  # is_valid_key guarantees it
    _ensure_package(root / "methods" / family)
    _write(paths["method"], templates.method_file(key, family, year))
    _write(paths["record"], templates.record_file(key, family))
    _write(paths["bib"], templates.bib_entry(key, year))
    _write(paths["test"], templates.test_file(key, family))
    return Scaffold(key=key, family=family, created=tuple(paths.values()))


# --------------------------------------------------------------------------- checks
def _check_key(key: str) -> None:
    if not is_valid_key(key):
        raise ScaffoldError(f"invalid key {key!r}: use a lowercase BibTeX key, surname + year + first title word, "
                            f"like 'hinton2015distilling'")


def _check_family(family: str) -> None:
    if family not in templates.FAMILY_BASES:
        raise ScaffoldError(f"unknown family {family!r}: new-method supports {', '.join(templates.FAMILY_BASES)}")


def _check_free(key: str, root: Path) -> None:
    """Refuse a key that already has a record, an entry, a method file or a test file."""
    papers = root / "catalog" / "papers"
    taken = [p for p in (papers / f"{key}.yaml", papers / f"{key}.bib", root / "tests" / "methods" / f"test_{key}.py")
             if p.exists()]
    taken += sorted((root / "methods").glob(f"*/{key}.py"))
    if taken:
        where = ", ".join(str(p.relative_to(root)) for p in taken)
        raise ScaffoldError(f"key {key!r} already exists ({where}); pick another key or edit those files")


# --------------------------------------------------------------------------- writing
def _paths(key: str, family: str, root: Path) -> dict[str, Path]:
    return {
        "method": root / "methods" / family / f"{key}.py",
        "record": root / "catalog" / "papers" / f"{key}.yaml",
        "bib": root / "catalog" / "papers" / f"{key}.bib",
        "test": root / "tests" / "methods" / f"test_{key}.py",
    }


def _ensure_package(pkg: Path) -> None:
    if not (pkg / "__init__.py").exists():
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text(f'"""{pkg.name} methods: one file per paper."""\n', encoding="utf-8")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8") as f:  # "x": never overwrite
        f.write(text)
