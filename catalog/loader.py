"""Load ``catalog/`` (``papers/<key>.bib`` + ``papers/<key>.yaml``) into a validated :class:`Catalog`.

Every problem in every file is collected first, then one :class:`CatalogError`
is raised whose ``problems`` are ``path:line: field: message`` lines.
"""
from __future__ import annotations

import difflib
from pathlib import Path

from mcbench.catalog.bibtex import (
    PLACEHOLDER, VENUE_FIELD, BibRecord, display_authors, latex_to_text, normalize_doi, normalize_eprint,
    parse_bib_file,
)
from mcbench.catalog.model import Catalog, CatalogError, Paper
from mcbench.catalog.problems import Problems, show_path
from mcbench.catalog.records import PaperMeta, check_record, read_yaml

DEFAULT_ROOT = Path(__file__).resolve().parent  # records ship beside their loader (package data)


def load_catalog(root: Path | str | None = None) -> Catalog:
    """Load and validate the catalog under ``root`` (default: the repository's ``catalog/``).

    Raises :class:`CatalogError` listing every problem found.
    """
    catalog, problems = load_with_problems(root)
    if problems:
        raise CatalogError(problems)
    return catalog


def load_with_problems(root: Path | str | None = None) -> tuple[Catalog, list[str]]:
    """Like :func:`load_catalog` but returns the problems instead of raising; the catalog
    then holds only the papers whose BibTeX entry and YAML record are both usable."""
    root = Path(root) if root is not None else DEFAULT_ROOT
    problems = Problems()
    if not root.is_dir():
        problems.add(root, 1, "root", "catalog directory does not exist")
        return Catalog(papers={}, root=root), problems.lines
    _check_no_shared_bib(root, problems)
    bibs, reported = _load_bibs(root / "papers", problems)
    metas = _load_metas(root / "papers", problems)
    _check_pairs(bibs, metas, root / "papers", reported, problems)
    _check_duplicate_ids(bibs, problems)
    for key in sorted(bibs.keys() & metas.keys()):
        _check_years(bibs[key], metas[key], problems)
    _check_tags(root, metas, problems)
    papers = {key: _merge(bibs[key], metas[key]) for key in sorted(bibs.keys() & metas.keys())}
    return Catalog(papers=papers, root=root), problems.lines


# --------------------------------------------------------------------------- files
def _load_bibs(papers_dir: Path, problems: Problems) -> tuple[dict[str, BibRecord], set[str]]:
    """The entry of every ``papers/<key>.bib`` by key: one entry per file, its key the file stem.

    Also returns the keys whose entry exists but was reported unusable (so no "missing entry" follows).
    """
    out: dict[str, BibRecord] = {}
    reported: set[str] = set()
    for path in sorted(papers_dir.glob("*.bib")):
        known = len(problems)
        records = parse_bib_file(path, problems)
        reported.add(path.stem)
        if len(records) > 1:
            problems.add(path, records[1].line, "key", f"{len(records)} entries ({', '.join(r.key for r in records)}); "
                                                       "a .bib file holds the entry of one paper")
            continue
        if not records:
            if len(problems) == known:
                problems.add(path, 1, "bibtex", "no BibTeX entry")
            continue
        record = records[0]
        if record.key != path.stem:
            problems.add(path, record.line, "key", f"{record.key!r} differs from the file name {path.stem!r} "
                                                   f"(the file of entry {record.key!r} is papers/{record.key}.bib)")
            reported.add(record.key)
            continue
        out[record.key] = record
    return out, reported - out.keys()


def _check_no_shared_bib(root: Path, problems: Problems) -> None:
    """The old layout (``bib/<family>.bib``) is not read any more; say so instead of ignoring it."""
    for path in sorted((root / "bib").glob("*.bib")):
        problems.add(path, 1, "file", "catalog/bib/ is no longer read: each entry lives in papers/<key>.bib "
                                      "beside its record (python scripts/split_bib.py moves them)")


def _load_metas(papers_dir: Path, problems: Problems) -> dict[str, PaperMeta]:
    out: dict[str, PaperMeta] = {}
    for path in sorted(papers_dir.glob("*.y*ml")):
        if path.suffix == ".yml":
            problems.add(path, 1, "file", "paper records end in .yaml")
        doc = read_yaml(path, problems)
        meta = check_record(doc, problems) if doc is not None else None
        if meta is not None:
            out[path.stem] = meta
    return out


def _where(path: Path, line: int) -> str:
    return f"{show_path(path)}:{line}"


# --------------------------------------------------------------------------- cross-file rules
def _check_pairs(bibs: dict[str, BibRecord], metas: dict[str, PaperMeta], papers_dir: Path,
                 reported: set[str], problems: Problems) -> None:
    """Each ``papers/<key>.bib`` has a ``papers/<key>.yaml`` beside it and vice versa.

    A file that exists but did not load is not reported again here: its own problems say why.
    """
    for key in sorted(bibs.keys() - metas.keys()):
        rec = bibs[key]
        if not (papers_dir / f"{key}.yaml").exists():
            problems.add(rec.file, rec.line, "key", f"entry {key!r} has no record catalog/papers/{key}.yaml")
    for key in sorted(metas.keys() - bibs.keys() - reported):
        meta = metas[key]
        if not (papers_dir / f"{key}.bib").exists():
            problems.add(meta.path, meta.lines.get("key", 1), "key",
                         f"no BibTeX entry: catalog/papers/{key}.bib is missing")


def _check_duplicate_ids(bibs: dict[str, BibRecord], problems: Problems) -> None:
    """The same paper under two keys: same arXiv eprint or same DOI."""
    for field, normalize in (("eprint", normalize_eprint), ("doi", normalize_doi)):
        seen: dict[str, BibRecord] = {}
        for rec in bibs.values():
            ident = normalize(rec.get(field))
            if ident is None or ident.startswith(PLACEHOLDER.lower()):
                continue
            first = seen.setdefault(ident, rec)
            if first is not rec:
                problems.add(rec.file, rec.line_of(field), field,
                             f"{rec.get(field)!r} of {rec.key!r} is also the {field} of {first.key!r} "
                             f"({_where(first.file, first.line_of(field))}): the same paper under two keys")


def load_vocabulary(root: Path, problems: Problems | None = None) -> dict[str, str] | None:
    """``tags.yaml``'s controlled tag vocabulary (tag -> description), or None when the catalog has none."""
    path = root / "tags.yaml"
    if not path.is_file():
        return None
    doc = read_yaml(path, problems or Problems())
    tags = doc.data.get("tags") if doc is not None and isinstance(doc.data, dict) else None
    if not isinstance(tags, dict):
        if problems is not None:
            problems.add(path, 1, "tags", "tags.yaml needs a mapping 'tags: {tag: description}'")
        return {}
    return {str(k): str(v) for k, v in tags.items()}


def _check_tags(root: Path, metas: dict[str, PaperMeta], problems: Problems) -> None:
    """Every record's tags come from the controlled vocabulary in ``tags.yaml`` (when the catalog has one)."""
    vocabulary = load_vocabulary(root, problems)
    if vocabulary is None:
        return
    for meta in metas.values():
        unknown = [t for t in meta.tags if t not in vocabulary]
        if unknown:
            close = {t: difflib.get_close_matches(t, vocabulary, n=1) for t in unknown}
            hints = "; ".join(f"{t!r}" + (f" (did you mean {c[0]!r}?)" if c else "") for t, c in close.items())
            problems.add(meta.path, meta.lines.get("tags", 1), "tags",
                         f"not in the controlled vocabulary (catalog/tags.yaml): {hints}")


def _check_years(rec: BibRecord, meta: PaperMeta, problems: Problems) -> None:
    """The key's year is the first public version's: ``first_public_year`` when given, else the BibTeX year;
    a first public version cannot follow the cited one, and ``first_public_year`` equal to the year is noise."""
    year = rec.get("year")
    if year is None or not year.isdigit():
        return
    first = meta.first_public_year
    line = meta.lines.get("first_public_year", 1)
    if first is not None and first > int(year):
        problems.add(meta.path, line, "first_public_year",
                     f"{first} is after the BibTeX year {year} of {rec.key!r}; the first public version cannot come later")
    elif first is not None and first == int(year):
        problems.add(meta.path, line, "first_public_year",
                     f"equals the BibTeX year {year}; leave it out (it is only for a cited version published later)")
    key_year = next((rec.key[i:i + 4] for i in range(len(rec.key)) if rec.key[i:i + 4].isdigit()), None)
    if key_year is not None and int(key_year) != (first or int(year)):
        where = (f"first_public_year {first}" if first is not None
                 else f"the BibTeX year {year} (set first_public_year when the venue year differs)")
        problems.add(meta.path, meta.lines.get("key", 1), "key",
                     f"{rec.key!r}: the key's year {key_year} is not the first public version's, {where}")


# --------------------------------------------------------------------------- records
def _merge(rec: BibRecord, meta: PaperMeta) -> Paper:
    year = rec.get("year")
    venue_field = VENUE_FIELD.get(rec.entry_type)
    venue = rec.get(venue_field) if venue_field else None
    return Paper(
        key=rec.key, family=meta.family, tags=meta.tags, summary=meta.summary, status=meta.status,
        reason=meta.reason, title=latex_to_text(rec.get("title")) or "", authors=display_authors(rec.get("author")),
        year=int(year) if year and year.isdigit() else 0, venue=latex_to_text(venue), entry_type=rec.entry_type,
        eprint=rec.get("eprint"), doi=rec.get("doi"), url=rec.get("url"), bibtex=rec.raw, claims=meta.claims, complexity=meta.complexity,
        discrepancies=meta.discrepancies, reading_list=meta.reading_list, bib_file=rec.file, yaml_file=meta.path,
        venue_note=meta.venue_note, bib_line=rec.line, field_lines=meta.lines,
        first_public_year=meta.first_public_year, short_name_field=meta.short_name,
        leaderboard_tier=meta.leaderboard_tier, tier_reason=meta.tier_reason,
    )
