"""Each bad input gives a clear problem naming the file, the line and the field.

Fixtures: ``tests/fixtures/catalog/<case>/`` is a tiny catalog (``papers/<key>.bib`` + ``papers/<key>.yaml``)
with one defect.
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
    "malformed_bibtex": ("papers/smith2015distilling.bib", 1, "bibtex", ["malformed", "smith2015distilling"]),
    "duplicate_key": ("papers/smith2015distilling.bib", 9, "key", ["duplicate", "smith2015distilling", "line 1"]),
    "two_entries": ("papers/smith2015distilling.bib", 9, "key", ["2 entries", "jones2015distilling", "one paper"]),
    "bib_key_mismatch": ("papers/smith2015distilling.bib", 1, "key", ["'smith2015distiling'", "file name"]),
    "duplicate_arxiv": ("papers/smith2015distilling.bib", 5, "eprint",
                        ["jones2015distilling", "smith2015distilling", "jones2015distilling.bib:5", "two keys"]),
    "duplicate_doi": ("papers/roe2018survey.bib", 6, "doi",
                      ["roe2018survey", "doe2017pruning", "doe2017pruning.bib:8", "two keys"]),
    "unknown_family": ("papers/smith2015distilling.yaml", 3, "family", ["distilation", "distillation"]),
    "claim_without_value": ("papers/smith2015distilling.yaml", 10, "claims[0].value", ["number"]),
    "claim_without_unit": ("papers/smith2015distilling.yaml", 12, "claims[0].unit", ["required"]),
    "bad_yaml": ("papers/smith2015distilling.yaml", 5, "yaml", ["invalid YAML", "line 4"]),
    "catalog_only_without_reason": ("papers/roe2018survey.yaml", 8, "reason", ["required"]),
    "missing_record": ("papers/smith2015distilling.bib", 1, "key", ["no record", "smith2015distilling.yaml"]),
    "key_mismatch": ("papers/smith2015distilling.yaml", 2, "key", ["smith2015distiling", "file name"]),
    "wrong_schema_version": ("papers/smith2015distilling.yaml", 1, "schema_version", ["must be 1"]),
    "bad_compare_measure": ("papers/smith2015distilling.yaml", 18, "claims[0].compare.measure",
                            ["accuracy", "acc_delta_pp"]),
    "missing_title": ("papers/smith2015distilling.bib", 1, "title", ["no title"]),
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


def test_every_bib_file_of_the_real_catalog_holds_one_entry_named_by_its_stem() -> None:
    """One paper, its own files: papers/<key>.bib beside papers/<key>.yaml, and no shared bib/ folder."""
    from mcbench.catalog import DEFAULT_ROOT

    import bibtexparser

    assert not (DEFAULT_ROOT / "bib").exists()
    bibs = sorted((DEFAULT_ROOT / "papers").glob("*.bib"))
    assert {p.stem for p in bibs} == {p.stem for p in (DEFAULT_ROOT / "papers").glob("*.yaml")}
    for path in bibs:
        entries = bibtexparser.parse_file(str(path)).entries
        assert [e.key for e in entries] == [path.stem], path


def test_a_renamed_bib_file_is_reported_once(tmp_path: Path) -> None:
    """A stem that differs from the entry's key: one problem at the .bib file, no cascade."""
    root = tmp_path / "catalog"
    shutil.copytree(FIXTURES / "valid", root)
    (root / "papers" / "doe2017pruning.bib").rename(root / "papers" / "doe2017prune.bib")
    _, problems = load_with_problems(root)
    parsed = [parse_problem(p) for p in problems]
    assert [(Path(p["path"]).name, p["field"]) for p in parsed] == [("doe2017prune.bib", "key")], problems
    assert "'doe2017pruning' differs from the file name 'doe2017prune'" in parsed[0]["message"]


def test_a_record_without_its_bib_file(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(FIXTURES / "valid", root)
    (root / "papers" / "doe2017pruning.bib").unlink()
    _, problems = load_with_problems(root)
    assert len(problems) == 1 and "doe2017pruning.yaml:2: key: no BibTeX entry" in problems[0], problems
    assert "papers/doe2017pruning.bib is missing" in problems[0]


def test_the_old_shared_bib_folder_is_reported(tmp_path: Path) -> None:
    """A family .bib file (the old layout, e.g. from an old branch) is not silently ignored."""
    root = tmp_path / "catalog"
    shutil.copytree(FIXTURES / "valid", root)
    (root / "bib").mkdir()
    (root / "bib" / "pruning.bib").write_text((root / "papers" / "doe2017pruning.bib").read_text())
    _, problems = load_with_problems(root)
    assert len(problems) == 1 and "bib/pruning.bib:1: file: catalog/bib/ is no longer read" in problems[0]


def test_the_family_is_stated_once_in_the_record(tmp_path: Path) -> None:
    """Changing the family is one edit of the YAML record; no BibTeX file has to move."""
    root = tmp_path / "catalog"
    shutil.copytree(FIXTURES / "valid", root)
    record = root / "papers" / "doe2017pruning.yaml"
    record.write_text(record.read_text().replace("family: pruning", "family: compact"))
    catalog, problems = load_with_problems(root)
    assert problems == [] and catalog.papers["doe2017pruning"].family == "compact"


def test_unknown_yaml_field_and_duplicate_yaml_key(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(FIXTURES / "valid", root)
    record = root / "papers" / "roe2018survey.yaml"
    record.write_text(record.read_text() + "staus: planned\ntags: [again]\n")
    _, problems = load_with_problems(root)
    parsed = {(p["field"], p["line"]) for p in map(parse_problem, problems)}
    assert ("staus", "10") in parsed and ("tags", "11") in parsed, problems
