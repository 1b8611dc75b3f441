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
    for name, value in record.fields.items():
        if value.strip().startswith(PLACEHOLDER):
            problems.add(record.file, record.line_of(name), name,
                         f"placeholder {value.strip()[:40]!r} in {record.key!r} left by `mcbench new-method`; "
                         "fill it in")


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
