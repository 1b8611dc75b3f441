"""The ``mcbench`` command line (typer + rich).

Bad input (unknown method or task, missing dataset, corrupted checkpoint,
invalid options) ends with one line on stderr and a non-zero exit, no traceback.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mcbench.benchmarks.data import DatasetMissingError
from mcbench.benchmarks.errors import McbenchError
from mcbench.methods.registry import REGISTRY, UnknownMethodError

app = typer.Typer(help="mcbench: honest benchmarks for neural-network compression.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
console = Console()
err = Console(stderr=True)
wide = Console(width=max(console.width, 180))  # tables stay readable when stdout is not a terminal

DEFAULT_DB = Path("runs/mcbench.sqlite")
SNAPSHOT = Path("results/snapshot")
FALLBACK_LABEL = "digits (fallback: Fashion-MNIST not installed)"


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _split(csv: str | None) -> list[str] | None:
    return [s.strip() for s in csv.split(",") if s.strip()] if csv else None


@app.command()
def run(
    task: str = typer.Option("fmnist", help="task name (see `mcbench tasks`)"),
    budget: str = typer.Option("default", help="smoke | default | paper"),
    methods: Optional[str] = typer.Option(None, help="comma-separated registry keys (default: references + all)"),
    seeds: int = typer.Option(3, min=1, help="number of seeds (0..N-1)"),
    threads: int = typer.Option(2, min=1, help="CPU threads, pinned and recorded"),
    db: Path = typer.Option(DEFAULT_DB, help="SQLite results store"),
    cache_dir: Path = typer.Option(Path("cache/checkpoints"), help="trained baseline/teacher checkpoints"),
    data_dir: Optional[Path] = typer.Option(None, help="local dataset folder (mnist, cifar10, imagefolder)"),
    device: str = typer.Option("cpu", help="cpu | cuda (training; latency is always measured on CPU too)"),
    fallback_digits: bool = typer.Option(False, help="if Fashion-MNIST is missing, say so and use digits"),
    config: Optional[str] = typer.Option(None, help='JSON per-method overrides, e.g. \'{"zhu2017prune": {"final_sparsity": 0.9}}\''),
    force: bool = typer.Option(False, help="rerun rows already stored (each replaced only once its rerun finished)"),
) -> None:
    """Run a sweep; finished rows are skipped, so an interrupted sweep resumes."""
    from mcbench.benchmarks.runner import REFERENCES, SweepConfig, run_sweep
    from mcbench.benchmarks.tasks import TASKS

    if device not in ("cpu", "cuda"):
        fail(f"--device must be cpu or cuda, not {device!r}", 2)
    method_list = _split(methods) or list(REFERENCES) + REGISTRY.keys()
    try:
        overrides = json.loads(config) if config else {}
        for m in method_list:
            if m not in REFERENCES:
                REGISTRY.get(m)
        cfg = SweepConfig(task=task, budget=budget, methods=method_list, seeds=list(range(seeds)), threads=threads,
                          db=db, cache_dir=cache_dir, data_dir=data_dir, device=device, overrides=overrides, force=force)
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
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            bar = progress.add_task("runs", total=None)

            def on_done(spec, row):
                progress.advance(bar)
                progress.console.print(f"  {spec.method:<25} s{spec.seed} top-1 {row.top1_acc_pct:5.2f}% "
                                       f"p50 {row.latency_ms_p50_cpu_b1:.3f}ms {row.wall_time_s:5.1f}s", highlight=False)

            rows = run_sweep(cfg, splits=splits, log=progress.console.print,
                             on_start=lambda n: progress.update(bar, total=n), on_done=on_done)
        console.print(f"{len(rows)} new rows in {time.perf_counter() - t0:.1f}s -> {db}")
    except (UnknownMethodError, DatasetMissingError, McbenchError, ValueError, json.JSONDecodeError) as e:
        fail(str(e))


@app.command()
def leaderboard(
    db: Path = typer.Option(DEFAULT_DB, help="SQLite results store"),
    task: Optional[str] = typer.Option(None), budget: Optional[str] = typer.Option(None),
    out: Path = typer.Option(Path("runs/leaderboard"), help="where the CSV and plots go"),
    export: bool = typer.Option(False, help=f"also refresh the committed snapshot in {SNAPSHOT}"),
    snapshot: Path = typer.Option(SNAPSHOT, help="snapshot folder for --export"),
    markdown: bool = typer.Option(False, help="print the table as markdown (for the README) instead"),
) -> None:
    """Aggregate over seeds, print the table, write CSV + Pareto plots (and the site snapshot)."""
    from mcbench.benchmarks.leaderboard import aggregate, plots_for
    from mcbench.benchmarks.runner import environment
    from mcbench.benchmarks.store import ResultStore

    if not db.exists():
        fail(f"no results store at {db}; run `mcbench run` first")
    with ResultStore(db) as store:
        runs = store.dataframe()
        if export:
            env = environment(int(runs["cpu_threads"].iloc[0]) if len(runs) else 0)
            if len(runs):
                env.update(wall_time_s_total=float(runs["wall_time_s"].sum()),
                           peak_mem_bytes_max=int(runs["peak_mem_bytes"].max()),
                           rows=len(runs), first_run_utc=runs["timestamp_utc"].min(), last_run_utc=runs["timestamp_utc"].max())
            paths = store.export(snapshot, env)
            console.print(f"snapshot: {', '.join(map(str, paths))}")
    if task:
        runs = runs[runs["task"] == task]
    if budget:
        runs = runs[runs["budget"] == budget]
    agg = aggregate(runs)
    if markdown:
        from mcbench.benchmarks.leaderboard import markdown_table

        typer.echo(markdown_table(agg))
        return
    out.mkdir(parents=True, exist_ok=True)
    agg.to_csv(out / "leaderboard.csv", index=False)
    if export:
        agg.to_csv(snapshot / "leaderboard.csv", index=False)
    table = Table(title=f"mcbench leaderboard ({len(runs)} runs)")
    for col in ("task", "budget", "method", "top-1 % (mean ± std)", "n", "params nz", "disk B", "MACs",
                "p50 b1 ms", "p50 b64 ms", "speedup b1/b64", "MACs ratio", "real"):
        table.add_column(col, justify="right" if col not in ("task", "budget", "method") else "left")
    for _, r in agg.iterrows():
        std = "" if r["top1_acc_pct_std"] != r["top1_acc_pct_std"] else f" ± {r['top1_acc_pct_std']:.2f}"
        table.add_row(r["task"], r["budget"], r["method"], f"{r['top1_acc_pct_mean']:.2f}{std}", str(r["n_seeds"]),
                      f"{r['params_nonzero_mean']:,.0f}", f"{r['size_bytes_disk_mean']:,.0f}", f"{r['macs_mean']:,.0f}",
                      f"{r['latency_ms_p50_cpu_b1_mean']:.3f}", f"{r['latency_ms_p50_cpu_b64_mean']:.2f}",
                      f"{r['speedup_cpu_b1_mean']:.2f}x / {r['speedup_cpu_b64_mean']:.2f}x",
                      f"{r['macs_ratio_vs_baseline_mean']:.2f}x", "real" if r["compression_real"] else "simulated")
    wide.print(table)
    plots = plots_for(agg, out)
    console.print(f"wrote {out / 'leaderboard.csv'} and {len(plots)} plots in {out}")


@app.command("methods")
def methods_cmd() -> None:
    """List registered methods (key = BibTeX key), family, source file and default config."""
    table = Table(title=f"{len(REGISTRY)} registered methods")
    for col in ("key", "family", "source", "config"):
        table.add_column(col)
    for e in REGISTRY:
        table.add_row(e.key, e.family, e.source_file, json.dumps(e.cls().config_dict()))
    console.print(table)


@app.command()
def tasks(as_json: bool = typer.Option(False, "--json", help="print the recipes as JSON")) -> None:
    """Tasks and the training recipe of every budget (data, not code)."""
    from mcbench.benchmarks.tasks import TASKS

    data = [t.describe() for t in TASKS.values()]
    if as_json:
        typer.echo(json.dumps(data, indent=1))
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

if __name__ == "__main__":
    app()
