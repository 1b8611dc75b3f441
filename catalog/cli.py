"""``mcbench catalog list|show|validate|export`` and ``mcbench new-method``.

Mounted by ``benchmarks/cli.py``::

    app.add_typer(catalog_app, name="catalog")
    app.command("new-method")(new_method)

Errors are one line on stderr, no traceback: exit 1 for an invalid catalog, 2 for bad usage.
"""
from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import NoReturn

import pandas as pd
import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mcbench.catalog.export import FORMATS, export
from mcbench.catalog.loader import load_with_problems
from mcbench.catalog.model import CATALOG_FAMILIES, STATUSES, Catalog, Paper, count_by_family
from mcbench.catalog.registry_check import check_registry
from mcbench.catalog.scaffold import ScaffoldError
from mcbench.catalog.scaffold import new_method as scaffold_method

EXIT_INVALID = 1
LIST_FORMATS = ("table", "json", "csv")
EXIT_USAGE = 2

catalog_app = typer.Typer(name="catalog", help="Browse, validate and export the paper catalog.",
                          no_args_is_help=True, add_completion=False)

RootOption = typer.Option(None, "--root", help="Catalog directory (default: the repository's catalog/).")


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load(root: Path | None) -> Catalog:
    """The catalog, or a one-line error (exit 1) pointing at ``validate``."""
    catalog, problems = load_with_problems(root)
    if problems:
        _fail(f"the catalog has {len(problems)} problem(s), first: {problems[0]} "
              f"(run `mcbench catalog validate` for all)", EXIT_INVALID)
    return catalog


def _check_choice(name: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        _fail(f"unknown {name} {value!r}; expected one of {', '.join(allowed)}", EXIT_USAGE)


# --------------------------------------------------------------------------- list
@catalog_app.command("list")
def list_papers(
    family: str | None = typer.Option(None, "--family", "-f", help=f"One of: {', '.join(CATALOG_FAMILIES)}."),
    tag: list[str] = typer.Option([], "--tag", "-t", help="Keep papers with this tag (repeat: all of them)."),
    year: int | None = typer.Option(None, "--year", "-y", help="Year of the first public version."),
    status: str | None = typer.Option(None, "--status", "-s", help=f"One of: {', '.join(STATUSES)}."),
    root: Path | None = RootOption,
    fmt: str = typer.Option("table", "--format", help=f"One of: {', '.join(LIST_FORMATS)} (json/csv: one record per paper)."),
) -> None:
    """List papers (filtered), then the per-family counts."""
    _check_choice("family", family, CATALOG_FAMILIES)
    _check_choice("status", status, STATUSES)
    _check_choice("format", fmt, LIST_FORMATS)
    papers = _load(root).select(family=family, tags=tag, year=year, status=status)
    if fmt != "table":
        typer.echo(_papers_records(papers, fmt), nl=False)
        return
    console = Console()
    if papers:
        console.print(_papers_table(papers))
        console.print(_counts_table(papers))
    console.print(Text(_counts_line(papers)), soft_wrap=True)


def _papers_records(papers: list[Paper], fmt: str) -> str:
    records = [{"key": p.key, "family": p.family, "year": p.year, "status": p.status, "title": p.title} for p in papers]
    if fmt == "json":
        return json.dumps(records, indent=1, ensure_ascii=False) + "\n"
    return pd.DataFrame(records, columns=["key", "family", "year", "status", "title"]).to_csv(index=False)


def _papers_table(papers: list[Paper]) -> Table:
    table = Table("key", "family", "year", "status", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in table.columns:
        column.no_wrap = True
    table.add_column("title", min_width=16, ratio=1)
    for p in papers:
        table.add_row(p.key, p.family, str(p.year), p.status, Text(p.title))
    return table


def _counts_table(papers: list[Paper]) -> Table:
    table = Table("family", "papers", *STATUSES, title="per family")
    for family, counts in count_by_family(papers).items():
        if counts["total"]:
            table.add_row(family, *(str(counts[c]) for c in ("total", *STATUSES)))
    return table


def _counts_line(papers: list[Paper]) -> str:
    """``31 papers: distillation 5, pruning 9, ...`` (families with none are left out)."""
    counts = count_by_family(papers)
    parts = [f"{f} {c['total']}" for f, c in counts.items() if c["total"]]
    noun = "paper" if len(papers) == 1 else "papers"
    return f"{len(papers)} {noun}" + (": " + ", ".join(parts) if parts else "")


# --------------------------------------------------------------------------- show
@catalog_app.command("show")
def show(key: str = typer.Argument(..., help="The paper's BibTeX key."), root: Path | None = RootOption) -> None:
    """A paper's metadata, claims and BibTeX."""
    catalog = _load(root)
    paper = catalog.papers.get(key)
    if paper is None:
        close = difflib.get_close_matches(key, list(catalog.papers), n=3)
        _fail(f"no paper {key!r} in the catalog" + (f"; did you mean {', '.join(close)}?" if close else ""),
              EXIT_USAGE)
    console = Console()
    console.print(_metadata_table(paper))
    if paper.claims:
        console.print(_claims_text(paper))
    console.print(Text(paper.bibtex))


def _metadata_table(p: Paper) -> Table:
    table = Table(show_header=False, title=Text(p.key), title_justify="left")
    rows = [
        ("title", p.title), ("authors", ", ".join(p.authors)), ("year", str(p.year)), ("venue", p.venue),
        ("family", p.family), ("status", p.status + (f" ({p.reason})" if p.reason else "")),
        ("tags", ", ".join(p.tags)), ("arXiv", p.arxiv_url), ("DOI", p.doi_url), ("url", p.url),
        ("summary", p.summary), ("venue note", p.venue_note),
        ("discrepancies", "\n".join(f"- {d}" for d in p.discrepancies)),
    ]
    for name, value in rows:
        if value:
            table.add_row(name, Text(value))
    return table


def _claims_text(p: Paper) -> Text:
    """One block per claim: the headline line, then its context indented."""
    lines = ["claims:"]
    for i, c in enumerate(p.claims, 1):
        lines.append(f"  {i}. {c.metric} = {c.value:g} {c.unit} on {c.dataset} ({c.where})")
        details = [("model", c.model), ("baseline", c.baseline), ("conditions", c.conditions)]
        if c.compare:
            details.append(("compare", f"{c.compare.measure}: expected {c.compare.expected:g} "
                                       f"{c.compare.tolerance_text()}"))
            details.append(("tolerance because", c.compare.tolerance_why or "(not justified: no verdict)"))
        lines += [f"     {name}: {value}" for name, value in details if value]
    return Text("\n".join(lines))


# --------------------------------------------------------------------------- validate
@catalog_app.command("validate")
def validate(
    root: Path | None = RootOption,
    registry: bool = typer.Option(True, "--registry/--no-registry",
                                  help="Also check registry keys against catalog keys (both ways)."),
) -> None:
    """Check every BibTeX entry and YAML record (and the method registry); exit 1 on any problem."""
    catalog, problems = load_with_problems(root)
    problems += _setting_problems(catalog)
    if registry:
        try:
            problems += [p for p in check_registry(catalog) if p not in problems]
        except Exception as exc:  # a method module that fails to import
            _fail(f"cannot import the registered methods: {type(exc).__name__}: {exc}", EXIT_INVALID)
    if problems:
        for line in problems:
            typer.echo(line, err=True)
        typer.echo(f"{len(problems)} problem(s)", err=True)
        raise typer.Exit(EXIT_INVALID)
    typer.echo(f"ok: {len(catalog.papers)} papers" + (", registry consistent" if registry else ""))


def _setting_problems(catalog) -> list[str]:
    """Problems of the paper settings beside the catalog (``<root>/settings/*.yaml``), if any exist."""
    from mcbench.catalog.settings import SettingError, available, check_against_catalog, load_setting

    folder = Path(catalog.root) / "settings" if catalog.root is not None else None
    if folder is None or not folder.is_dir():
        return []
    settings, problems = {}, []
    for key in available(folder):
        try:
            settings[key] = load_setting(key, folder)
        except SettingError as e:
            problems += e.problems
    return problems + check_against_catalog(settings, {k: len(p.claims) for k, p in catalog.papers.items()})


# --------------------------------------------------------------------------- export
@catalog_app.command("export")
def export_cmd(
    fmt: str = typer.Option("bib", "--format", help=f"One of: {', '.join(FORMATS)}."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
    root: Path | None = RootOption,
) -> None:
    """Export the whole catalog as BibTeX, CSV (one row per paper) or JSON (claims nested)."""
    _check_choice("format", fmt, FORMATS)
    text = export(_load(root), fmt)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")


# --------------------------------------------------------------------------- new-method
def new_method(
    key: str = typer.Argument(..., help="The paper's BibTeX key, e.g. hinton2015distilling."),
    family: str = typer.Option(..., "--family", "-f", help="distillation, pruning, quantization, binarization "
                                                           "or compact."),
    root: Path | None = typer.Option(None, "--root", hidden=True, help="Repository root (tests)."),
) -> None:
    """Scaffold a method: catalog entry (bib + yaml), implementation file, test file."""
    try:
        result = scaffold_method(key, family, root)
    except ScaffoldError as exc:
        _fail(str(exc), EXIT_USAGE)
    base = Path(root) if root is not None else Path.cwd()
    for path in result.created:
        typer.echo(f"created  {_rel(path, base)}")
    typer.echo("next: fill every TODO (`mcbench catalog validate` lists them), implement the method, "
               f"make tests/methods/test_{key}.py assert its defining property, then "
               f"`mcbench run --methods {key} --task digits --budget smoke`")


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
