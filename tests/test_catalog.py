"""The real catalog (``catalog/``) loads and validates, and exports round-trip through bibtexparser."""
from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import bibtexparser
import pandas as pd
import pytest

from mcbench.catalog import CATALOG_FAMILIES, Catalog, CatalogError, load_catalog
from mcbench.catalog.bibtex import normalize_doi, normalize_eprint
from mcbench.catalog.export import TABLE_COLUMNS, export

FIXTURES = Path(__file__).parent / "fixtures" / "catalog"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    try:
        return load_catalog()
    except CatalogError as exc:  # show every problem, not just the first
        pytest.fail("the catalog does not validate:\n" + "\n".join(exc.problems), pytrace=False)


def test_catalog_is_not_empty(catalog: Catalog) -> None:
    assert len(catalog.papers) > 0
    assert list(catalog.papers) == sorted(catalog.papers)


def test_every_paper_is_complete(catalog: Catalog) -> None:
    for p in catalog.papers.values():
        assert p.family in CATALOG_FAMILIES, p.key
        assert p.title and "{" not in p.title, p.key
        assert p.authors and all(a and "," not in a for a in p.authors), p.key
        assert 1980 <= p.year <= 2030, p.key
        assert p.summary, p.key
        assert p.bib_file is not None and p.bib_file.name == f"{p.key}.bib", p.key
        assert p.yaml_file is not None and p.yaml_file.stem == p.key, p.key
        assert p.bibtex.lstrip().startswith("@"), p.key
        if p.status == "catalog-only":
            assert p.reason, p.key


def test_no_paper_under_two_keys(catalog: Catalog) -> None:
    for attr, normalize in (("eprint", normalize_eprint), ("doi", normalize_doi)):
        ids = Counter(normalize(getattr(p, attr)) for p in catalog.papers.values() if getattr(p, attr))
        assert [i for i, n in ids.items() if n > 1] == [], attr


def test_by_family_counts_add_up(catalog: Catalog) -> None:
    by_family = catalog.by_family()
    assert sum(len(v) for v in by_family.values()) == len(catalog.papers)


# --------------------------------------------------------------------------- export round trips
@pytest.fixture(params=["real", "fixture"])
def any_catalog(request: pytest.FixtureRequest, catalog: Catalog) -> Catalog:
    return catalog if request.param == "real" else load_catalog(FIXTURES / "valid")


def _source_entries(cat: Catalog) -> dict[str, bibtexparser.model.Entry]:
    out = {}
    for path in sorted({p.bib_file for p in cat.papers.values()}):
        out |= {e.key: e for e in bibtexparser.parse_file(str(path)).entries}
    return out


def test_bib_export_round_trips(any_catalog: Catalog) -> None:
    library = bibtexparser.parse_string(export(any_catalog, "bib"))
    assert library.failed_blocks == []
    exported = {e.key: e for e in library.entries}
    assert sorted(exported) == sorted(any_catalog.papers)
    source = _source_entries(any_catalog)
    for key, entry in exported.items():
        assert entry.entry_type == source[key].entry_type, key
        assert {f.key: f.value for f in entry.fields} == {f.key: f.value for f in source[key].fields}, key


def test_json_export_round_trips(any_catalog: Catalog) -> None:
    data = json.loads(export(any_catalog, "json"))
    assert data["schema_version"] == 1
    papers = {p["key"]: p for p in data["papers"]}
    assert sorted(papers) == sorted(any_catalog.papers)
    for key, paper in any_catalog.papers.items():
        assert papers[key]["title"] == paper.title
        assert papers[key]["authors"] == paper.authors
        assert [c["value"] for c in papers[key]["claims"]] == [c.value for c in paper.claims]


def test_csv_export_has_one_row_per_paper(any_catalog: Catalog) -> None:
    table = pd.read_csv(io.StringIO(export(any_catalog, "csv")), keep_default_na=False)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert list(table["key"]) == list(any_catalog.papers)
    assert list(table["year"]) == [p.year for p in any_catalog.papers.values()]


def test_fixture_display_text() -> None:
    """LaTeX in titles and authors becomes plain text; authors are "First Last" in order."""
    cat = load_catalog(FIXTURES / "valid")
    smith = cat.papers["smith2015distilling"]
    assert smith.title == "Distilling CNNs into Small Müller Nets"
    assert smith.authors == ["John Smith", "Hans Müller", "Anna van der Berg"]
    assert smith.arxiv_url == "https://arxiv.org/abs/1503.00001"
    assert smith.claims[0].compare is not None and smith.claims[0].compare.measure == "acc_delta_pp"
    doe = cat.papers["doe2017pruning"]
    assert doe.venue == "International Conference on Learning Representations (ICLR)"
    assert doe.doi_url == "https://doi.org/10.1000/fixture.2017.1"
    assert doe.reading_list[0]["file"] == "001_fixture.txt"
    assert cat.papers["roe2018survey"].venue == "Journal of Fixtures"
    assert [p.key for p in cat.select(tags=["soft-targets"])] == ["smith2015distilling"]
