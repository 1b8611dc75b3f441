"""Export a loaded catalog as BibTeX (bibtexparser v2 writer), CSV (pandas) or JSON."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import bibtexparser
import pandas as pd
from bibtexparser.library import Library

from mcbench.catalog.model import Catalog, Paper

FORMATS = ("bib", "csv", "json")
# one row per paper in the CSV table; list fields are joined with "; "
TABLE_COLUMNS = ("key", "family", "status", "year", "title", "authors", "venue", "entry_type", "eprint", "doi",
                 "url", "tags", "n_claims", "reason", "summary")


def export(catalog: Catalog, fmt: str) -> str:
    """The catalog as text in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "bib":
        return to_bibtex(catalog)
    if fmt == "csv":
        return to_table(catalog).to_csv(index=False)
    if fmt == "json":
        return to_json(catalog)
    raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")


def to_bibtex(catalog: Catalog) -> str:
    """All entries, sorted by key, re-serialised by the bibtexparser writer (parses back identically)."""
    library = Library()
    for paper in catalog.papers.values():
        parsed = bibtexparser.parse_string(paper.bibtex)
        library.add(parsed.entries)
    return bibtexparser.write_string(library)


def to_table(catalog: Catalog) -> pd.DataFrame:
    """One row per paper with the columns of :data:`TABLE_COLUMNS`."""
    rows = [_row(p) for p in catalog.papers.values()]
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def _row(p: Paper) -> dict[str, Any]:
    return {
        "key": p.key, "family": p.family, "status": p.status, "year": p.year, "title": p.title,
        "authors": "; ".join(p.authors), "venue": p.venue, "entry_type": p.entry_type, "eprint": p.eprint,
        "doi": p.doi, "url": p.url, "tags": "; ".join(p.tags), "n_claims": len(p.claims), "reason": p.reason,
        "summary": p.summary,
    }


def paper_dict(p: Paper, base: Path | None = None) -> dict[str, Any]:
    """A JSON-ready record of one paper: every field, claims nested, paths relative to ``base``."""
    out = dataclasses.asdict(p)
    out.pop("field_lines", None)
    out["bib_file"], out["yaml_file"] = _rel(p.bib_file, base), _rel(p.yaml_file, base)
    out["arxiv_url"], out["doi_url"] = p.arxiv_url, p.doi_url
    return out


def to_json(catalog: Catalog) -> str:
    """``{"schema_version": 1, "papers": [...]}`` with one full record per paper, sorted by key."""
    base = catalog.root.resolve().parent if catalog.root else None
    papers = [paper_dict(p, base) for p in catalog.papers.values()]
    # allow_nan=False: NaN and Infinity are not JSON; the loader rejects them, and this would raise, not write them
    return json.dumps({"schema_version": 1, "papers": papers}, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _rel(path: Path | None, base: Path | None) -> str | None:
    if path is None:
        return None
    resolved = path.resolve()
    return str(resolved.relative_to(base)) if base and resolved.is_relative_to(base) else str(path)
