"""Each bad input gives a clear problem naming the file, the line and the field.

Fixtures: ``tests/fixtures/catalog/<case>/`` is a tiny catalog (``bib/``, ``papers/``) with one defect.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from mcbench.catalog import CatalogError, load_catalog, load_with_problems

FIXTURES = Path(__file__).parent / "fixtures" / "catalog"
PROBLEM_RE = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?P<field>[^:]+): (?P<message>.+)$")

# case -> (file, line, field, words the message must contain)
CASES = {
    "malformed_bibtex": ("bib/distillation.bib", 11, "bibtex", ["malformed", "broken2016entry"]),
    "duplicate_key": ("bib/distillation.bib", 11, "key", ["duplicate", "smith2015distilling", "line 3"]),
    "duplicate_arxiv": ("bib/distillation.bib", 15, "eprint",
                        ["jones2015distilling", "smith2015distilling", "distillation.bib:7", "two keys"]),
    "duplicate_doi": ("bib/survey.bib", 6, "doi", ["roe2018survey", "doe2017pruning", "pruning.bib:8", "two keys"]),
    "unknown_family": ("papers/smith2015distilling.yaml", 3, "family", ["distilation", "distillation"]),
    "claim_without_value": ("papers/smith2015distilling.yaml", 10, "claims[0].value", ["number"]),
    "claim_without_unit": ("papers/smith2015distilling.yaml", 12, "claims[0].unit", ["required"]),
    "bad_yaml": ("papers/smith2015distilling.yaml", 5, "yaml", ["invalid YAML", "line 4"]),
    "catalog_only_without_reason": ("papers/roe2018survey.yaml", 8, "reason", ["required"]),
    "missing_record": ("bib/distillation.bib", 3, "key", ["no record", "smith2015distilling.yaml"]),
    "key_mismatch": ("papers/smith2015distilling.yaml", 2, "key", ["smith2015distiling", "file name"]),
    "wrong_schema_version": ("papers/smith2015distilling.yaml", 1, "schema_version", ["must be 1"]),
    "bad_compare_measure": ("papers/smith2015distilling.yaml", 18, "claims[0].compare.measure",
                            ["accuracy", "acc_delta_pp"]),
    "missing_title": ("bib/distillation.bib", 3, "title", ["no title"]),
    "bad_compare_reference": ("papers/smith2015distilling.yaml", 21, "claims[0].compare.reference",
                              ["teacher", "baseline, student"]),
}


def parse_problem(text: str) -> dict[str, str]:
    match = PROBLEM_RE.match(text)
    assert match, f"problem is not 'path:line: field: message': {text!r}"
    return match.groupdict()


def problems_of(case: str) -> list[str]:
    with pytest.raises(CatalogError) as info:
        load_catalog(FIXTURES / case)
    assert info.value.problems, "CatalogError without problems"
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def test_valid_fixture_loads() -> None:
    cat = load_catalog(FIXTURES / "valid")
    assert list(cat.papers) == ["doe2017pruning", "roe2018survey", "smith2015distilling"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_names_file_line_field(case: str) -> None:
    rel_file, line, field, words = CASES[case]
    problems = problems_of(case)
    for text in problems:
        parse_problem(text)
    expected = (FIXTURES / case / rel_file).resolve()
    hits = [p for p in map(parse_problem, problems)
            if Path(p["path"]).resolve() == expected and p["field"] == field]
    assert hits, f"no problem for {rel_file} / {field} in:\n" + "\n".join(problems)
    assert int(hits[0]["line"]) == line, hits[0]
    for word in words:
        assert word in hits[0]["message"], (word, hits[0]["message"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_reports_only_its_defect(case: str) -> None:
    """One defect, one problem: no cascade of follow-on errors that hide the cause."""
    assert len(problems_of(case)) == 1, problems_of(case)


def test_all_problems_are_collected_before_raising(tmp_path: Path) -> None:
    """Two broken fixtures merged into one catalog: both problems in one CatalogError."""
    root = tmp_path / "catalog"
    shutil.copytree(FIXTURES / "valid", root)
    shutil.copy(FIXTURES / "claim_without_unit" / "papers" / "smith2015distilling.yaml", root / "papers")
    shutil.copy(FIXTURES / "catalog_only_without_reason" / "papers" / "roe2018survey.yaml", root / "papers")
    _, problems = load_with_problems(root)
    fields = sorted(parse_problem(p)["field"] for p in problems)
    assert fields == ["claims[0].unit", "reason"]


def test_same_key_in_two_bib_files(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(FIXTURES / "valid", root)
    dup = (root / "bib" / "distillation.bib").read_text()
    (root / "bib" / "pruning.bib").write_text((root / "bib" / "pruning.bib").read_text() + "\n" + dup)
    _, problems = load_with_problems(root)
    hits = [parse_problem(p) for p in problems if "duplicate BibTeX key 'smith2015distilling'" in p]
    assert hits and hits[0]["path"].endswith("pruning.bib") and "distillation.bib:3" in hits[0]["message"]


def test_entry_in_the_wrong_family_file(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(FIXTURES / "valid", root)
    record = root / "papers" / "doe2017pruning.yaml"
    record.write_text(record.read_text().replace("family: pruning", "family: compact"))
    _, problems = load_with_problems(root)
    assert len(problems) == 1 and ": family: 'compact' but the BibTeX entry is in pruning.bib" in problems[0]


def test_unknown_yaml_field_and_duplicate_yaml_key(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(FIXTURES / "valid", root)
    record = root / "papers" / "roe2018survey.yaml"
    record.write_text(record.read_text() + "staus: planned\ntags: [again]\n")
    _, problems = load_with_problems(root)
    parsed = {(p["field"], p["line"]) for p in map(parse_problem, problems)}
    assert ("staus", "10") in parsed and ("tags", "11") in parsed, problems
