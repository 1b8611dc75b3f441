"""Catalog edges: keys matched in full (no trailing newline), finite claims only, strict JSON export."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mcbench.catalog import load_catalog, load_with_problems
from mcbench.catalog.export import export
from mcbench.catalog.scaffold import ScaffoldError, new_method
from mcbench.methods.registry import KEY_RE, Registry, is_valid_key

FIXTURES = Path(__file__).parent / "fixtures" / "catalog"


@pytest.mark.parametrize("key", ["hinton2015distilling\n", "hinton2015distilling\n\n", "\nhinton2015distilling",
                                 "hinton2015distilling ", "hinton2015distilling/x", "hinton2015distillïng"])
def test_a_key_is_matched_in_full(key: str) -> None:
    assert not is_valid_key(key)
    assert KEY_RE.match(key) is None  # even a plain .match() cannot stop before a trailing newline
    with pytest.raises(ValueError, match="not a BibTeX-style key"):
        Registry().add(key, "pruning", type("m", (), {}))


def test_valid_keys_still_pass() -> None:
    for key in ("hinton2015distilling", "carreira-perpinan2017model", "zhu2017prune", "he2017channel"):
        assert is_valid_key(key), key


def test_scaffold_refuses_a_key_with_a_newline(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(FIXTURES / "valid", root / "catalog")
    with pytest.raises(ScaffoldError, match="invalid key"):
        new_method("lee2019pruning\n", "pruning", root=root)
    assert sorted(p.name for p in (root / "catalog" / "papers").iterdir()) == sorted(
        p.name for p in (FIXTURES / "valid" / "papers").iterdir())  # nothing written


def test_a_bib_key_with_a_newline_is_a_problem(tmp_path: Path) -> None:
    from mcbench.catalog.bibtex import BibRecord, check_record
    from mcbench.catalog.problems import Problems

    problems = Problems()
    record = BibRecord(key="smith2015distilling\n", entry_type="misc", file=tmp_path / "x.bib", line=1,
                       fields={"title": "T", "author": "A, B", "year": "2015"})
    check_record(record, problems)
    assert len(problems) == 1 and "is not a lowercase BibTeX key" in problems.lines[0]


@pytest.mark.parametrize("field, value", [("value", ".nan"), ("value", ".inf"), ("value", "-.inf"),
                                          ("expected", ".nan"), ("tolerance", ".inf")])
def test_claims_reject_nan_and_infinity(tmp_path: Path, field: str, value: str) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(FIXTURES / "valid", root)
    record = root / "papers" / "smith2015distilling.yaml"
    old = {"value": "value: 74", "expected": "expected: 0.7", "tolerance": "tolerance: 0.5"}[field]
    text = record.read_text()
    assert old in text
    record.write_text(text.replace(old, f"{field}: {value}"))
    _, problems = load_with_problems(root)
    assert len(problems) == 1, problems
    assert f"{field}: must be a finite number" in problems[0] and "smith2015distilling.yaml" in problems[0]


def _reject_constant(name: str) -> None:
    raise ValueError(f"not JSON: {name}")


@pytest.mark.parametrize("root", [None, FIXTURES / "valid"], ids=["real", "fixture"])
def test_json_export_is_strict_json(root: Path | None) -> None:
    text = export(load_catalog(root), "json")
    data = json.loads(text, parse_constant=_reject_constant)  # NaN / Infinity / -Infinity would raise
    assert data["schema_version"] == 1 and data["papers"]
    values = [c["value"] for p in data["papers"] for c in p["claims"]]
    assert all(isinstance(v, float) for v in values)


def test_json_export_refuses_to_write_nan(tmp_path: Path) -> None:
    """A NaN that got past the loader (e.g. set in Python) makes the export fail, never emit invalid JSON."""
    import dataclasses

    catalog = load_catalog(FIXTURES / "valid")
    paper = catalog.papers["smith2015distilling"]
    paper.claims[0] = dataclasses.replace(paper.claims[0], value=float("nan"))
    with pytest.raises(ValueError, match="JSON compliant"):
        export(catalog, "json")
