"""Parse the catalog's BibTeX files (bibtexparser v2) into plain records with line numbers.

This module only reads BibTeX and reports what is malformed inside one file; the
rules that span files (every entry has a YAML record, no paper under two keys)
live in :mod:`mcbench.catalog.loader`.
"""
from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import bibtexparser
from bibtexparser.exceptions import BlockAbortedException
from bibtexparser.middlewares.names import parse_single_name_into_parts, split_multiple_persons_names
from bibtexparser.model import DuplicateBlockKeyBlock, DuplicateFieldKeyBlock, Entry, ParsingFailedBlock
from pylatexenc.latex2text import LatexNodes2Text

from mcbench.catalog.problems import Problems
from mcbench.methods.registry import is_valid_key  # the one definition of a valid key

REQUIRED_FIELDS = ("title", "author", "year")
# entry type -> the field that names its venue
VENUE_FIELD = {"inproceedings": "booktitle", "article": "journal", "phdthesis": "school", "mastersthesis": "school"}
PLACEHOLDER = "TODO"
_YEAR_RE = re.compile(r"^\d{4}$")
# where a venue entry states the venue's year: the booktitle/journal text ("... ICLR 2018", "(CVPR 2018)"),
# an IEEE conference DOI ("10.1109/CVPR.2018.00286", "CVPR42600.2020.00165"), an AAAI DOI (volume 32 = 2018)
# or a CVF open-access URL ("content_CVPR_2020/", "content_cvpr_2018_workshops/")
_TEXT_YEAR = re.compile(r"(?<![\d.])((?:19|20)\d\d)(?![\d.])")
_DOI_YEAR = re.compile(r"^10\.1109/[a-z]+(?:\d+)?\.((?:19|20)\d\d)\.", re.I)
_AAAI_DOI = re.compile(r"^10\.1609/aaai\.v(\d+)i", re.I)
_CVF_URL = re.compile(r"openaccess\.thecvf\.com/content_[a-z]+_((?:19|20)\d\d)", re.I)
AAAI_FIRST_YEAR = 1986   # AAAI proceedings volume n appeared in 1986 + n (volume 32 = AAAI 2018)
_LATEX = LatexNodes2Text(math_mode="verbatim")


@dataclass
class BibRecord:
    """One parsed BibTeX entry: raw field values (enclosing removed) plus where they came from."""

    key: str
    entry_type: str
    fields: dict[str, str]
    file: Path
    line: int                                   # 1-based line of the ``@type{key,`` line
    field_lines: dict[str, int] = field(default_factory=dict)
    raw: str = ""

    def line_of(self, name: str) -> int:
        """1-based line of field ``name``, or of the entry when the field is absent."""
        return self.field_lines.get(name, self.line)

    def get(self, name: str) -> str | None:
        value = self.fields.get(name)
        return value.strip() if isinstance(value, str) and value.strip() else None


# --------------------------------------------------------------------------- parsing
@contextlib.contextmanager
def _quiet_bibtexparser() -> Iterator[None]:
    """bibtexparser logs each aborted block; we report them ourselves, once, with the file name."""
    logger = logging.getLogger("bibtexparser")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)


def parse_bib_text(text: str, path: Path, problems: Problems) -> list[BibRecord]:
    """Parse BibTeX ``text`` (read from ``path``); malformed blocks are added to ``problems``."""
    with _quiet_bibtexparser():
        library = bibtexparser.parse_string(text)
    for block in library.failed_blocks:
        _report_failed_block(block, path, problems)
    records = [_to_record(entry, path) for entry in library.entries]
    for record in records:
        check_record(record, problems)
    return records


def parse_bib_file(path: Path, problems: Problems) -> list[BibRecord]:
    """Parse one ``.bib`` file; see :func:`parse_bib_text`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(path, 1, "file", f"cannot read: {exc}")
        return []
    return parse_bib_text(text, path, problems)


def _to_record(entry: Entry, path: Path) -> BibRecord:
    fields = {f.key.lower(): f.value if isinstance(f.value, str) else str(f.value) for f in entry.fields}
    lines = {f.key.lower(): f.start_line + 1 for f in entry.fields if f.start_line is not None}
    return BibRecord(key=entry.key, entry_type=entry.entry_type.lower(), fields=fields, file=path,
                     line=(entry.start_line or 0) + 1, field_lines=lines, raw=(entry.raw or "").strip())


def _report_failed_block(block: ParsingFailedBlock, path: Path, problems: Problems) -> None:
    line = (block.start_line or 0) + 1
    if isinstance(block, DuplicateBlockKeyBlock):
        first = (block.previous_block.start_line or 0) + 1
        problems.add(path, line, "key", f"duplicate BibTeX key {block.key!r} (first defined on line {first})")
    elif isinstance(block, DuplicateFieldKeyBlock):
        entry = block.ignore_error_block
        key = entry.key if isinstance(entry, Entry) else "?"
        names = ", ".join(sorted(block.duplicate_keys))
        problems.add(path, line, names, f"field given twice in entry {key!r}")
    else:
        error = block.error
        reason = error.abort_reason if isinstance(error, BlockAbortedException) else str(error)
        head = (block.raw or "").strip().splitlines()[0][:60] if block.raw else ""
        problems.add(path, line, "bibtex", f"malformed BibTeX block {head!r}: {reason.strip()}")


# --------------------------------------------------------------------------- per-entry rules
def check_record(record: BibRecord, problems: Problems) -> None:
    """Rules that concern one entry alone: key shape, required fields, year, venue, placeholders."""
    if not is_valid_key(record.key):
        problems.add(record.file, record.line, "key",
                     f"{record.key!r} is not a lowercase BibTeX key like 'hinton2015distilling'")
    for name in REQUIRED_FIELDS:
        if record.get(name) is None:
            problems.add(record.file, record.line, name, f"entry {record.key!r} has no {name}")
    year = record.get("year")
    if year is not None and not _YEAR_RE.match(year):
        problems.add(record.file, record.line_of("year"), "year", f"{year!r} is not a four-digit year")
    venue = VENUE_FIELD.get(record.entry_type)
    if venue and record.get(venue) is None:
        problems.add(record.file, record.line, venue, f"@{record.entry_type} {record.key!r} needs a {venue}")
    if venue in ("booktitle", "journal"):
        check_venue_year(record, problems)
    for name, value in record.fields.items():
        if value.strip().startswith(PLACEHOLDER):
            problems.add(record.file, record.line_of(name), name,
                         f"placeholder {value.strip()[:40]!r} in {record.key!r} left by `mcbench new-method`; "
                         "fill it in")


def venue_years(record: BibRecord) -> dict[str, int]:
    """The venue's year as each field of a venue entry states it: ``{field: year}`` (empty when none does).

    A BibTeX entry cites one version, so its ``year`` is that version's year: for an ``@inproceedings``
    or ``@article`` entry, the venue's year (the first public version's year is the YAML record's
    ``first_public_year``). Only venue fields, the DOI and the CVF URL are read, never the title.
    """
    found: dict[str, int] = {}
    venue = VENUE_FIELD.get(record.entry_type)
    text = record.get(venue) if venue in ("booktitle", "journal") else None
    if text:
        years = {int(y) for y in _TEXT_YEAR.findall(text)}
        if len(years) == 1:
            found[venue] = years.pop()
    doi = normalize_doi(record.get("doi")) or ""
    m = _DOI_YEAR.match(doi)
    if m:
        found["doi"] = int(m.group(1))
    m = _AAAI_DOI.match(doi)
    if m:
        found["doi"] = AAAI_FIRST_YEAR + int(m.group(1))
    m = _CVF_URL.search(record.get("url") or "")
    if m:
        found["url"] = int(m.group(1))
    return found


def check_venue_year(record: BibRecord, problems: Problems) -> None:
    """A venue entry's ``year`` is the venue's: it may not precede it (nor follow it), and its fields agree."""
    found = venue_years(record)
    year = record.get("year")
    if not found or year is None or not _YEAR_RE.match(year):
        return
    if len(set(found.values())) > 1:
        said = ", ".join(f"{name} says {y}" for name, y in found.items())
        problems.add(record.file, record.line_of("year"), "year", f"{record.key!r}: the venue's year is ambiguous ({said})")
        return
    name, venue_year = next(iter(found.items()))
    if int(year) != venue_year:
        relation = "precedes" if int(year) < venue_year else "follows"
        problems.add(record.file, record.line_of("year"), "year",
                     f"{record.key!r}: year {year} {relation} the venue's year {venue_year} (from its {name}); a venue "
                     f"entry's year is the venue's (put the first public year in the YAML record's first_public_year)")


# --------------------------------------------------------------------------- display text
def latex_to_text(value: str | None) -> str | None:
    """BibTeX/LaTeX markup to plain text: ``{XNOR-Net}: {ImageNet}`` -> ``XNOR-Net: ImageNet``."""
    if value is None:
        return None
    try:
        text = _LATEX.latex_to_text(value)
    except Exception:  # pylatexenc is lenient; fall back to stripping braces
        text = value.replace("{", "").replace("}", "")
    return " ".join(text.split())


def display_authors(author_field: str | None) -> list[str]:
    """``Last, First and Last, First`` -> ``["First Last", ...]`` in order, LaTeX decoded."""
    if not author_field:
        return []
    names = []
    for name in split_multiple_persons_names(author_field):
        try:
            merged = parse_single_name_into_parts(name, strict=False).merge_first_name_first
        except Exception:
            merged = name
        names.append(latex_to_text(merged) or merged)
    return names


def normalize_eprint(value: str | None) -> str | None:
    """``arXiv:1503.02531v2`` -> ``1503.02531`` (for duplicate detection)."""
    if not value:
        return None
    v = value.strip().lower().removeprefix("arxiv:")
    return re.sub(r"v\d+$", "", v) or None


def normalize_doi(value: str | None) -> str | None:
    """``https://doi.org/10.1109/X`` -> ``10.1109/x`` (DOIs are case-insensitive)."""
    if not value:
        return None
    v = value.strip().lower()
    for prefix in ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "doi:"):
        v = v.removeprefix(prefix)
    return v or None
