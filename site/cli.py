"""``mcbench site build|serve``: the mkdocs site from ``site/`` (mounted by benchmarks/cli.py).

Both run mkdocs strictly on ``site/mkdocs.yml``; the hook in ``site/hooks/`` generates the catalog and
leaderboard pages from the catalog and the committed results snapshot. Nothing is rerun.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from mcbench.site.sources import CATALOG_ENV, MKDOCS_YML, REPO_ROOT, RESULTS_ENV

site_app = typer.Typer(help="Build or serve the catalog and leaderboard site (mkdocs-material).", no_args_is_help=True)

CatalogOpt = typer.Option(None, "--catalog-dir", help=f"Catalog root (default: catalog/; env {CATALOG_ENV}).")
ResultsOpt = typer.Option(None, "--results-dir", help=f"Results snapshot folder (default: results/snapshot/; env {RESULTS_ENV}).")


def _env(catalog_dir: Optional[Path], results_dir: Optional[Path]) -> dict[str, str]:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    if catalog_dir is not None:
        env[CATALOG_ENV] = str(catalog_dir.resolve())
    if results_dir is not None:
        env[RESULTS_ENV] = str(results_dir.resolve())
    return env


def _mkdocs(args: list[str], env: dict[str, str]) -> int:
    """Run mkdocs in a child process; SIGTERM and Ctrl-C reach it too, so no server is left behind."""
    proc = subprocess.Popen([sys.executable, "-m", "mkdocs", *args], cwd=REPO_ROOT, env=env)
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


@site_app.command()
def build(
    out: Path = typer.Option(Path("build/site"), "--out", "-o", help="Output folder (never committed)."),
    catalog_dir: Optional[Path] = CatalogOpt,
    results_dir: Optional[Path] = ResultsOpt,
) -> None:
    """Build the static site with `mkdocs build --strict` (a warning or broken link fails it)."""
    out = out if out.is_absolute() else Path.cwd() / out
    rc = _mkdocs(["build", "--strict", "-f", str(MKDOCS_YML), "-d", str(out)], _env(catalog_dir, results_dir))
    if rc == 0:
        typer.echo(f"site built in {out}")
    raise typer.Exit(rc)


@site_app.command()
def serve(
    dev_addr: str = typer.Option("127.0.0.1:8000", "--dev-addr", "-a", help="Address to serve on."),
    catalog_dir: Optional[Path] = CatalogOpt,
    results_dir: Optional[Path] = ResultsOpt,
) -> None:
    """Serve the site with live reload (`mkdocs serve --strict`); catalog and snapshot edits rebuild it."""
    raise typer.Exit(_mkdocs(["serve", "--strict", "-f", str(MKDOCS_YML), "-a", dev_addr], _env(catalog_dir, results_dir)))


if __name__ == "__main__":  # python -m mcbench.site.cli build
    site_app()
