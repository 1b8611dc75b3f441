"""Citation years: a venue entry's BibTeX year is the venue's; the first public year is separate metadata.

Runs over every entry of the real catalog (no fixture list to forget to update), plus the validator rules
on copies of real entries with one defect each.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from mcbench.catalog import load_catalog, load_with_problems
from mcbench.catalog.bibtex import parse_bib_file, venue_years
from mcbench.catalog.loader import DEFAULT_ROOT
from mcbench.catalog.problems import Problems

PAPERS = DEFAULT_ROOT / "papers"
CATALOG = load_catalog()
VENUE_ENTRIES = sorted(k for k, p in CATALOG.papers.items() if p.entry_type in ("inproceedings", "article"))

# Checked by hand against each paper's DOI, CVF open-access page or OpenReview forum (the list and the
# other entries whose first arXiv year had been given with the later venue): key -> (venue year, first public).
VERIFIED = {
    "jacob2017quantization": (2018, 2017),   # DOI 10.1109/CVPR.2018.00286
    "han2015deep": (2016, 2015),             # ICLR 2016
    "zhu2017prune": (2018, 2017),            # ICLR 2018 workshop track
    "hu2017squeeze": (2018, 2017),           # DOI 10.1109/CVPR.2018.00745
    "zhang2017shufflenet": (2018, 2017),     # DOI 10.1109/CVPR.2018.00716
    "yu2017nisp": (2018, 2017),              # CVPR 2018 (DOI 10.1109/CVPR.2018.00958)
    "xie2016aggregated": (2017, 2016),       # DOI 10.1109/CVPR.2017.634
    "chollet2016xception": (2017, 2016),     # DOI 10.1109/CVPR.2017.195
    "gupta2015cross": (2016, 2015),          # DOI 10.1109/CVPR.2016.309
    "chen2017darkrank": (2018, 2017),        # AAAI-18, DOI 10.1609/aaai.v32i1.11783
    "chen2017learning": (2018, 2017),        # AAAI-18, DOI 10.1609/aaai.v32i1.12282
    "louizos2017learning": (2018, 2017),     # ICLR 2018
    "frankle2018lottery": (2019, 2018),      # ICLR 2019
    "ashok2017n2n": (2018, 2017),            # OpenReview B1hcZZ-AW: ICLR 2018
    "chen2015net2net": (2016, 2015),         # ICLR 2016
    "romero2014fitnets": (2015, 2014),       # ICLR 2015
    "mishra2017apprentice": (2018, 2017),    # ICLR 2018
    "ding2018universal": (2019, 2018),       # OpenReview SJe9rh0cFX: ICLR 2019
    "chen2019addernet": (2020, 2019),        # CVPR 2020 (CVF)
    "han2019ghostnet": (2020, 2019),         # DOI 10.1109/CVPR42600.2020.00165
    "haroush2019knowledge": (2020, 2019),    # CVPR 2020 (CVF)
    "yin2019dreaming": (2020, 2019),         # CVPR 2020 (CVF)
    "bucilua2006model": (2006, 2006),        # KDD 2006, DOI 10.1145/1150402.1150464
}


def _record(key: str):
    problems = Problems()
    (rec,) = parse_bib_file(PAPERS / f"{key}.bib", problems)
    return rec


def _key_year(key: str) -> int:
    return int(re.search(r"\d{4}", key).group(0))


@pytest.mark.parametrize("key", VENUE_ENTRIES)
def test_venue_entry_year_is_the_venues(key: str) -> None:
    paper, rec = CATALOG.papers[key], _record(key)
    found = venue_years(rec)
    if paper.entry_type == "inproceedings":
        assert found, (f"{key}: the venue's year is in neither booktitle, DOI nor CVF URL; "
                       "write it in the booktitle, e.g. '... ({ICLR} 2018)'")
    assert set(found.values()) <= {paper.year}, f"{key}: BibTeX year {paper.year}, the venue says {found}"
    assert paper.first_public <= paper.year
    assert paper.first_public == _key_year(key), f"{key}: the key's year is the first public version's"


@pytest.mark.parametrize("key", sorted(CATALOG.papers))
def test_first_public_year_only_where_it_differs(key: str) -> None:
    paper = CATALOG.papers[key]
    if paper.first_public_year is not None:
        assert paper.entry_type in ("inproceedings", "article") and paper.first_public_year < paper.year


def test_hand_verified_years() -> None:
    got = {k: (CATALOG.papers[k].year, CATALOG.papers[k].first_public) for k in VERIFIED}
    assert got == VERIFIED


def test_bucilua_spelling() -> None:
    paper = CATALOG.papers["bucilua2006model"]
    assert paper.authors[0] == "Cristian Buciluǎ"
    assert "Bucilu{\\v{a}}" in paper.bibtex


# --------------------------------------------------------------------------- the validator
def _copy(tmp_path: Path, key: str) -> Path:
    root = tmp_path / "catalog"
    (root / "papers").mkdir(parents=True)
    for ext in ("bib", "yaml"):
        shutil.copy(PAPERS / f"{key}.{ext}", root / "papers" / f"{key}.{ext}")
    return root


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_validator_rejects_a_year_before_the_venue(tmp_path: Path) -> None:
    root = _copy(tmp_path, "jacob2017quantization")
    assert load_with_problems(root)[1] == []
    _edit(root / "papers" / "jacob2017quantization.bib", "year          = {2018}", "year          = {2017}")
    problems = load_with_problems(root)[1]
    assert any(p.endswith(".bib:6: year: 'jacob2017quantization': year 2017 precedes the venue's year 2018 (from its doi); "
                          "a venue entry's year is the venue's (put the first public year in the YAML record's "
                          "first_public_year)") for p in problems), problems


def test_validator_reads_the_year_in_the_booktitle(tmp_path: Path) -> None:
    root = _copy(tmp_path, "romero2014fitnets")
    _edit(root / "papers" / "romero2014fitnets.bib", "year          = {2015}", "year          = {2014}")
    problems = load_with_problems(root)[1]
    assert any("year 2014 precedes the venue's year 2015 (from its booktitle)" in p for p in problems), problems


def test_validator_rejects_disagreeing_venue_fields(tmp_path: Path) -> None:
    root = _copy(tmp_path, "jacob2017quantization")
    _edit(root / "papers" / "jacob2017quantization.bib", "({CVPR})", "({CVPR} 2017)")
    problems = load_with_problems(root)[1]
    assert any("venue's year is ambiguous (booktitle says 2017, doi says 2018)" in p for p in problems), problems


def test_validator_checks_first_public_year_against_the_key(tmp_path: Path) -> None:
    root = _copy(tmp_path, "jacob2017quantization")
    yaml_path = root / "papers" / "jacob2017quantization.yaml"
    _edit(yaml_path, "first_public_year: 2017", "first_public_year: 2016")
    problems = load_with_problems(root)[1]
    assert any(": key: 'jacob2017quantization': the key's year 2017 is not the first public version's, "
               "first_public_year 2016" in p for p in problems), problems
    _edit(yaml_path, "first_public_year: 2016", "first_public_year: 2019")
    assert any("first_public_year: 2019 is after the BibTeX year 2018" in p for p in load_with_problems(root)[1])
    _edit(yaml_path, "first_public_year: 2019", "first_public_year: 2017.5")
    assert any("first_public_year: must be a four-digit year" in p for p in load_with_problems(root)[1])
