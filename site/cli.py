"""``mcbench site build|serve``: the mkdocs site from ``site/`` (mounted by benchmarks/cli.py).

Both run mkdocs strictly on ``site/mkdocs.yml``; the hook in ``site/hooks/`` generates the catalog and
leaderboard pages from the catalog and the committed results snapshot. Nothing is rerun.

``build`` runs mkdocs in this process (no child to orphan), into a hidden sibling folder of ``--out``, and
swaps it in only when the build succeeded (rename the old site away, rename the new one in, delete the old):
a failed or killed build leaves the previous site as it was. ``serve`` runs mkdocs as a child that gets
SIGTERM when this process dies (Linux ``PR_SET_PDEATHSIG``), and on Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import logging
import os
import shutil
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
PR_SET_PDEATHSIG = 1


SITE_URL_ENV, REPO_URL_ENV = "MCBENCH_SITE_URL", "MCBENCH_REPO_URL"
SiteUrlOpt = typer.Option(None, "--site-url", help=f"Where the site is published; fills the sitemap (env {SITE_URL_ENV}).")
RepoUrlOpt = typer.Option(None, "--repo-url", help=f"Repository URL for source links pinned to the snapshot's commit "
                                                   f"(env {REPO_URL_ENV}).")


def _env(catalog_dir: Optional[Path], results_dir: Optional[Path], site_url: Optional[str] = None,
         repo_url: Optional[str] = None) -> dict[str, str]:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    if site_url:
        env[SITE_URL_ENV] = site_url
    if repo_url:
        env[REPO_URL_ENV] = repo_url
    if catalog_dir is not None:
        env[CATALOG_ENV] = str(catalog_dir.resolve())
    if results_dir is not None:
        env[RESULTS_ENV] = str(results_dir.resolve())
    return env


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: Ctrl-C and SIGTERM are still forwarded below


def _mkdocs(args: list[str], env: dict[str, str]) -> int:
    """Run mkdocs in a child that dies with us; SIGTERM and Ctrl-C reach it too, so no server is left behind."""
    proc = subprocess.Popen([sys.executable, "-m", "mkdocs", *args], cwd=REPO_ROOT, env=env,
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        signal.signal(signal.SIGTERM, previous)


def _log_to_stderr() -> None:
    logger = logging.getLogger("mkdocs")
    if not any(getattr(h, "_mcbench", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)-7s -  %(message)s"))
        handler._mcbench = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def build_into(site_dir: Path, env: dict[str, str]) -> None:
    """A strict in-process ``mkdocs build`` of ``site/mkdocs.yml`` into ``site_dir`` with ``env``'s inputs."""
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        cfg = load_config(str(MKDOCS_YML), site_dir=str(site_dir), strict=True)
        cfg.plugins.on_startup(command="build", dirty=False)
        try:
            mkdocs_build(cfg)
        finally:
            cfg.plugins.on_shutdown()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _clear_leftovers(out: Path) -> None:
    """Remove hidden build/old folders next to ``out`` left by builds that were killed."""
    from mcbench.benchmarks.store import pid_alive

    for p in out.parent.glob(f".{out.name}.*-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if p.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def swap_in(new: Path, out: Path) -> None:
    """Replace ``out`` by ``new`` with two renames (the old site is deleted once the new one is in place)."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.rename(out, old)
    os.rename(new, out)
    shutil.rmtree(old, ignore_errors=True)


def _exit_on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)


@site_app.command()
def build(
    out: Path = typer.Option(Path("build/site"), "--out", "-o", help="Output folder (never committed)."),
    catalog_dir: Optional[Path] = CatalogOpt,
    results_dir: Optional[Path] = ResultsOpt,
    site_url: Optional[str] = SiteUrlOpt,
    repo_url: Optional[str] = RepoUrlOpt,
) -> None:
    """Build the static site with `mkdocs build --strict` (a warning or broken link fails it) aside, then swap it in."""
    from mkdocs.exceptions import MkDocsException

    out = (out if out.is_absolute() else Path.cwd() / out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(out)
    staging = out.parent / f".{out.name}.building-{os.getpid()}"
    _log_to_stderr()
    previous = signal.signal(signal.SIGTERM, _exit_on_signal)  # run the cleanup below on SIGTERM too
    try:
        build_into(staging, _env(catalog_dir, results_dir, site_url, repo_url))
        swap_in(staging, out)
    except MkDocsException as e:
        typer.echo(f"error: site build failed, {out} left as it was: {e}", err=True)
        raise typer.Exit(1)
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(staging, ignore_errors=True)
    typer.echo(f"site built in {out}")


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
