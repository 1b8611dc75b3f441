"""The ``mcbench`` command line (typer + rich).

Every failure of every command (bad input, a missing dataset, a corrupt image or
checkpoint, an unusable store, a bug) ends with one ``error: ...`` line on stderr and
a non-zero exit, no traceback: the app's click group (``cli_errors.OneLineErrors``)
turns whatever a command raises into that line. ``--debug`` (or ``MCBENCH_DEBUG=1``)
prints the traceback too.

Run as ``mcbench`` or ``python -m mcbench.benchmarks.cli``, the process first re-executes itself
once with a fixed allocator (jemalloc preloaded, else glibc tunables; see ``allocator.py``), before
torch loads; ``mcbench --no-preload ...`` or ``MCBENCH_NO_PRELOAD=1`` opts out.
"""
from __future__ import annotations

if __name__ == "__main__":  # choose the allocator before torch is imported below (re-exec once)
    from mcbench.benchmarks.allocator import reexec_with_allocator

    reexec_with_allocator()

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mcbench.benchmarks.cli_errors import DEBUG_ENV, OneLineErrors, click_context, debug_enabled
from mcbench.benchmarks.data import DatasetMissingError
from mcbench.benchmarks.errors import McbenchError
from mcbench.methods.registry import REGISTRY, UnknownMethodError

app = typer.Typer(help="mcbench: honest benchmarks for neural-network compression.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False, cls=OneLineErrors)
console = Console()
err = Console(stderr=True)
wide = Console(width=max(console.width, 180))  # tables stay readable when stdout is not a terminal

DEFAULT_DB = Path("runs/mcbench.sqlite")
SNAPSHOT = Path("results/snapshot")
FALLBACK_LABEL = "digits (fallback: Fashion-MNIST not installed)"


def fail(message: str, code: int = 1) -> None:
    """One ``error:`` line and exit ``code`` (under --debug, the traceback of the exception being handled first)."""
    if sys.exc_info()[1] is not None and debug_enabled(click_context()):
        traceback.print_exc()
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _split(csv: str | None) -> list[str] | None:
    return [s.strip() for s in csv.split(",") if s.strip()] if csv else None


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", envvar=DEBUG_ENV,
                                    help="on failure, print the traceback too (not just the one-line error)"),
         no_preload: bool = typer.Option(False, "--no-preload", help="keep the default allocator (no jemalloc "
                                         "LD_PRELOAD / glibc tunables re-exec); the row records which one ran"),
         ) -> None:
    """mcbench: honest benchmarks for neural-network compression."""


@app.command()
def run(
    task: str = typer.Option("fmnist", help="task name (see `mcbench tasks`)"),
    budget: str = typer.Option("default", help="smoke | default | paper"),
    methods: Optional[str] = typer.Option(None, help="comma-separated registry keys (default: references + the --tier)"),
    tier: str = typer.Option("main", help="without --methods: main (the main job), extended (methods too costly for "
                             "it; each record says why) or all"),
    seeds: int = typer.Option(3, min=1, help="number of seeds (0..N-1)"),
    threads: int = typer.Option(2, min=1, help="CPU threads, pinned and recorded"),
    db: Path = typer.Option(DEFAULT_DB, help="SQLite results store"),
    cache_dir: Path = typer.Option(Path("cache/checkpoints"), help="trained baseline/teacher checkpoints"),
    data_dir: Optional[Path] = typer.Option(None, help="local dataset folder (mnist, cifar10, imagefolder)"),
    device: str = typer.Option("cpu", help="cpu | cuda (training; latency is always measured on CPU too)"),
    fallback_digits: bool = typer.Option(False, help="if Fashion-MNIST is missing, say so and use digits"),
    config: Optional[str] = typer.Option(None, help='per-method overrides: JSON, e.g. \'{"zhu2017prune": {"final_sparsity": 0.9}}\', '
                                                    'or the path of a .yaml/.yml/.json file holding the same mapping'),
    force: bool = typer.Option(False, help="rerun rows already stored (each replaced only once its rerun finished)"),
    workers: int = typer.Option(0, min=0, help="N >= 1: compute on a local Dask cluster of N worker processes "
                                "(--threads each), then time every model serially here; 0: one process"),
    scheduler: Optional[str] = typer.Option(None, help="address of a running Dask scheduler (tcp://host:8786) to "
                                            "compute on; workers share --cache-dir and --data-dir with this machine"),
) -> None:
    """Run a sweep; finished rows are skipped, so an interrupted sweep resumes."""
    from mcbench.benchmarks.overrides import load_overrides
    from mcbench.benchmarks.runner import SweepConfig, check_plan, default_methods, run_sweep
    from mcbench.benchmarks.tasks import TASKS

    if device not in ("cpu", "cuda"):
        fail(f"--device must be cpu or cuda, not {device!r}", 2)
    warn = lambda msg: err.print(f"[bold yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)  # noqa: E731
    try:
        method_list = _split(methods) or default_methods(warn, tier)
        overrides = load_overrides(config)
        cfg = SweepConfig(task=task, budget=budget, methods=method_list, seeds=list(range(seeds)), threads=threads,
                          db=db, cache_dir=cache_dir, data_dir=data_dir, device=device, overrides=overrides, force=force)
        check_plan(cfg)  # unknown/unfinished methods, stray or invalid overrides: one line, before any work
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        splits = None
        try:
            TASKS[task].recipe(budget)
            if task == "fmnist":
                from mcbench.benchmarks.data import load_fashion_mnist
                splits = load_fashion_mnist()
        except DatasetMissingError as e:
            if not fallback_digits:
                raise
            err.print(f"[bold yellow]WARNING:[/] {e}\n[bold yellow]Falling back to scikit-learn's digits; every row is "
                      f"labelled {FALLBACK_LABEL!r}.[/]")
            cfg.task, cfg.dataset_label = "digits", FALLBACK_LABEL
        t0 = time.perf_counter()
        cluster = None
        if workers or scheduler:
            from mcbench.benchmarks.parallel import connect

            cluster = connect(workers, scheduler)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            bar = progress.add_task("runs stored", total=None)
            computed = progress.add_task("computed", total=None, visible=cluster is not None)
            per_worker: dict[str, int] = {}

            def on_computed(spec, worker):
                progress.advance(computed)
                if worker not in per_worker:
                    per_worker[worker] = progress.add_task(f"  worker {worker}", total=None)
                progress.advance(per_worker[worker])
                progress.console.print(f"  {spec.method:<25} s{spec.seed} computed on worker {worker}", highlight=False)

            def on_done(spec, row):
                progress.advance(bar)
                if row is None:
                    progress.console.print(f"  {spec.method:<25} s{spec.seed} stored by another sweep", highlight=False)
                    return
                progress.console.print(f"  {spec.method:<25} s{spec.seed} top-1 {row.top1_acc_pct:5.2f}% "
                                       f"p50 {row.latency_ms_p50_cpu_b1:.3f}ms {row.wall_time_s:5.1f}s", highlight=False)

            def on_start(n):
                progress.update(bar, total=n)
                progress.update(computed, total=n)

            try:
                rows = run_sweep(cfg, splits=splits, log=progress.console.print, on_start=on_start, on_done=on_done,
                                 cluster=cluster, on_computed=on_computed)
            finally:
                if cluster is not None:
                    cluster.close()
        console.print(f"{len(rows)} new rows in {time.perf_counter() - t0:.1f}s -> {db}")
    except (UnknownMethodError, DatasetMissingError, McbenchError, ValueError, json.JSONDecodeError) as e:
        fail(str(e))


FormatOpt = typer.Option("table", "--format", help="table (for people) | json | csv (whole values, never truncated)")


@app.command()
def reproduce(
    key: str = typer.Argument(..., help="paper key with a setting in catalog/settings/"),
    budget: str = typer.Option("cpu", help="cpu (a laptop) | paper (the paper's full schedule, for --device cuda)"),
    data_dir: Optional[Path] = typer.Option(None, help="local copy of the paper's dataset (mnist, cifar10, imagefolder)"),
    seeds: int = typer.Option(1, min=1, help="number of seeds (0..N-1)"),
    threads: int = typer.Option(2, min=1, help="CPU threads, pinned and recorded"),
    db: Path = typer.Option(DEFAULT_DB, help="SQLite results store"),
    cache_dir: Path = typer.Option(Path("cache/checkpoints"), help="trained baseline/teacher checkpoints"),
    device: str = typer.Option("cpu", help="cpu | cuda"),
    force: bool = typer.Option(False, help="rerun rows already stored"),
) -> None:
    """Run a paper's own setting (architecture, schedule, dataset or its stated substitute)."""
    from mcbench.benchmarks.reproduce import reproduce as run_setting
    from mcbench.catalog.settings import SettingError

    if device not in ("cpu", "cuda"):
        fail(f"--device must be cpu or cuda, not {device!r}", 2)
    t0 = time.perf_counter()
    try:
        rows = run_setting(key, budget=budget, data_dir=data_dir, seeds=seeds, db=db, cache_dir=cache_dir,
                           device=device, threads=threads, force=force, log=console.print)
    except (UnknownMethodError, DatasetMissingError, McbenchError, SettingError, ValueError) as e:
        fail(str(e))
    for r in rows:
        console.print(f"  {r.method:<25} s{r.seed} top-1 {r.top1_acc_pct:5.2f}%  {r.dataset}", highlight=False)
    console.print(f"{len(rows)} new rows in {time.perf_counter() - t0:.1f}s -> {db}")


@app.command()
def leaderboard(
    db: Path = typer.Option(DEFAULT_DB, help="SQLite results store (opened read-only)"),
    task: Optional[str] = typer.Option(None), budget: Optional[str] = typer.Option(None),
    out: Path = typer.Option(Path("runs/leaderboard"), help="where the CSV and plots go"),
    export: bool = typer.Option(False, help=f"also refresh the committed snapshot in {SNAPSHOT} (all files or none)"),
    snapshot: Path = typer.Option(SNAPSHOT, help="snapshot folder for --export"),
    allow_dirty: bool = typer.Option(False, help="export rows produced from a tree with uncommitted code changes"),
    markdown: bool = typer.Option(False, help="print the table as markdown (for the README) instead"),
    fmt: str = FormatOpt,
) -> None:
    """Aggregate over seeds, print the table, write CSV + Pareto plots (and the site snapshot)."""
    from mcbench.benchmarks import export as snap
    from mcbench.benchmarks.leaderboard import aggregate, markdown_table, plots_for, rich_table
    from mcbench.benchmarks.listing import LIST_FORMATS, dump
    from mcbench.benchmarks.runner import environment

    if fmt not in LIST_FORMATS:
        fail(f"--format must be one of {', '.join(LIST_FORMATS)}, not {fmt!r}", 2)
    say = console.print if fmt == "table" and not markdown else err.print  # keep machine output clean
    try:
        runs = snap.select_runs(db, task, budget)
        agg = aggregate(runs)
        if export:
            env = environment(int(runs["cpu_threads"].iloc[0]))
            paths = snap.export_snapshot(runs, agg, snapshot, env, allow_dirty=allow_dirty)
            say(f"snapshot: {', '.join(map(str, paths))}")
    except McbenchError as e:
        fail(str(e))
    if markdown:
        typer.echo(markdown_table(agg))
        return
    out.mkdir(parents=True, exist_ok=True)
    agg.to_csv(out / "leaderboard.csv", index=False)
    if fmt == "table":
        wide.print(rich_table(agg, len(runs)))
    else:
        typer.echo(dump(agg.to_dict(orient="records"), fmt), nl=False)
    plots = plots_for(agg, out)
    say(f"wrote {out / 'leaderboard.csv'} and {len(plots)} plots in {out}")


def _config_json(entry) -> str:
    return json.dumps(entry.cls().config_dict())


@app.command("methods")
def methods_cmd(fmt: str = FormatOpt) -> None:
    """List registered methods (key = BibTeX key), family, source file and default config."""
    from mcbench.benchmarks.listing import dump

    records = [{"key": e.key, "family": e.family, "source": e.source_file, "config": e.cls().config_dict()}
               for e in REGISTRY]
    if fmt != "table":
        try:
            typer.echo(dump(records, fmt), nl=False)
        except ValueError as e:
            fail(str(e), 2)
        return
    if not sys.stdout.isatty() or console.width < 100:  # piped or narrow: plain lines, nothing truncated
        for r in records:
            typer.echo(f"{r['key']}  {r['family']}  {r['source']}  {json.dumps(r['config'])}")
        return
    table = Table(title=f"{len(REGISTRY)} registered methods")
    table.add_column("key", no_wrap=True, min_width=max((len(r["key"]) for r in records), default=3))
    table.add_column("family", no_wrap=True)
    for col in ("source", "config"):
        table.add_column(col, overflow="fold")
    for r in records:
        table.add_row(r["key"], r["family"], r["source"], json.dumps(r["config"]))
    console.print(table)


@app.command()
def tasks(as_json: bool = typer.Option(False, "--json", help="same as --format json"), fmt: str = FormatOpt) -> None:
    """Tasks and the training recipe of every budget (data, not code); csv has one line per task and budget."""
    from mcbench.benchmarks.listing import dump
    from mcbench.benchmarks.tasks import TASKS

    data = [t.describe() for t in TASKS.values()]
    fmt = "json" if as_json else fmt
    if fmt != "table":
        flat = [{"task": t["task"], "budget": b, **{k: v for k, v in t.items() if k not in ("task", "recipes")}, **r}
                for t in data for b, r in t["recipes"].items()]
        try:
            typer.echo(dump(data if fmt == "json" else flat, fmt), nl=False)
        except ValueError as e:
            fail(str(e), 2)
        return
    for t in data:
        console.print(f"[bold]{t['task']}[/]: {t['description']}  input {t['input']}")
        console.print(f"  baseline {t['baseline']['widths']}  teacher {t['teacher']['widths']}  student {t['student']['widths']}")
        for b, r in t["recipes"].items():
            console.print(f"  {b:<8} " + ", ".join(f"{k}={v}" for k, v in r.items()), highlight=False)


@app.command()
def env() -> None:
    """The environment results would be recorded with, and which datasets are available."""
    from mcbench.benchmarks.data import fashion_mnist_dir
    from mcbench.benchmarks.runner import environment

    import torch

    info = environment(torch.get_num_threads())
    try:
        info["fashion_mnist"] = str(fashion_mnist_dir())
    except DatasetMissingError as e:
        info["fashion_mnist"] = f"missing: {e}"
    for k, v in info.items():
        console.print(f"{k:>18}: {v}", highlight=False)


def _mount_optional() -> None:
    """Catalog and site commands live in their own modules."""
    try:
        from mcbench.catalog.cli import catalog_app, new_method

        app.add_typer(catalog_app, name="catalog", help="browse, validate and export the paper catalog")
        app.command("new-method")(new_method)
    except ImportError as e:  # pragma: no cover - only while a module is missing
        print(f"warning: catalog commands unavailable ({e})", file=sys.stderr)
    try:
        from mcbench.site.cli import site_app

        app.add_typer(site_app, name="site", help="build or serve the mkdocs site")
    except ImportError as e:  # pragma: no cover
        print(f"warning: site commands unavailable ({e})", file=sys.stderr)


_mount_optional()


def run_cli() -> None:
    """Run the CLI (the allocator re-exec happens before torch loads: ``allocator.main`` or the module guard)."""
    app()


if __name__ == "__main__":
    run_cli()
