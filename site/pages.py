"""Generate the site's Markdown pages and Pareto plots from a Catalog and result rows.

Pure functions: :func:`generate` takes the catalog, the runs DataFrame (or None: no snapshot yet),
the snapshot environment and the registry's source files, and returns every generated file as
``{path relative to docs/: str | bytes}`` plus the navigation for them. :func:`write_tree` writes
that mapping into a directory. Nothing here runs a model; every string that comes from the
catalog or the results goes through :mod:`mcbench.site.escape`.
"""
from __future__ import annotations

import html
import json
import math
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from mcbench.catalog.model import CATALOG_FAMILIES, Catalog, Paper
from mcbench.benchmarks.leaderboard import aggregate, pareto_plot
from mcbench.site import claims as cl
from mcbench.site.escape import code, external, fence, md, slug, tag

RUN_COMMAND = "mcbench run --methods {key} --task {task} --budget {budget}"
SNAPSHOT_HINT = "mcbench leaderboard --export"
FAMILY_BLURB = {
    "distillation": "A small student network is trained to match a larger teacher's outputs or features.",
    "pruning": "Weights, channels or filters are removed. Masks alone save nothing at run time; "
               "only physically removed channels (or sparse kernels) make the compression real.",
    "quantization": "Weights (and often activations) are stored and computed at low bit-widths. "
                    "Fake-quantized floats simulate it; int8 kernels make it real.",
    "binarization": "The limit of quantization: 1-bit weights and/or activations.",
    "compact": "Architectures designed to be small and cheap from the start.",
    "acceleration": "Faster inference by restructuring computation: low-rank factorisation, fast convolution and the like.",
    "survey": "Surveys and overviews: context for the other families, with no headline claims of their own to reproduce.",
}
STATUS_ICON = {
    cl.REPRODUCED: "reproduced", cl.SAME_DIRECTION: "same-direction", cl.NOT_REPRODUCED: "not-reproduced",
    cl.NOT_COMPARABLE: "not-comparable", cl.NOT_YET_RUN: "not-yet-run",
}
DASH = "—"


@dataclass
class SiteSources:
    files: dict[str, str | bytes] = field(default_factory=dict)
    nav_catalog: list = field(default_factory=list)
    nav_leaderboard: list = field(default_factory=list)
    snippets: dict[str, str] = field(default_factory=dict)   # "<!-- mcbench:NAME -->" markers in hand-written pages


# --------------------------------------------------------------------------- formatting (display only)
def _isnum(v) -> bool:
    try:
        return v is not None and not math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def sig(v, digits: int = 3) -> str:
    """``v`` to ``digits`` significant figures, never in exponent notation."""
    if not _isnum(v):
        return DASH
    v = float(v)
    if v == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    return f"{v:.{decimals}f}"


def fixed(v, decimals: int = 2) -> str:
    return f"{float(v):.{decimals}f}" if _isnum(v) else DASH


def pm(mean, std, decimals: int | None = None) -> str:
    """``mean ± std`` (std over seeds; omitted for a single seed)."""
    f = (lambda x: fixed(x, decimals)) if decimals is not None else sig
    if not _isnum(mean):
        return DASH
    if not _isnum(std):
        return f(mean)
    return f"{f(mean)} ± {fixed(std, decimals) if decimals is not None else sig(std, 2)}"


def scale_for(values, units=((1e9, "G"), (1e6, "M"), (1e3, "k"))) -> tuple[float, str]:
    """One display scale per table column (so sorting the column text sorts the numbers)."""
    nums = [abs(float(v)) for v in values if _isnum(v)]
    if not nums:
        return 1.0, ""
    mid = sorted(nums)[len(nums) // 2]
    for factor, prefix in units:
        if mid >= factor:
            return factor, prefix
    return 1.0, ""


def status_badge(status: str) -> str:
    return f'<span class="mc-status mc-status--{STATUS_ICON[status]}">{status}</span>'


def _front_matter(title: str, **extra) -> str:
    meta = {"title": html.escape(title, quote=True), **extra}
    return "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False) + "---\n\n"


def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["l"] * len(header)
    sep = ["---:" if a == "r" else ":---:" if a == "c" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(c if c != "" else DASH for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _admonition(kind: str, title: str, body: str) -> str:
    return f'!!! {kind} "{title}"\n\n' + "".join(f"    {line}\n" if line else "\n" for line in body.splitlines()) + "\n"


# --------------------------------------------------------------------------- paths
def paper_path(p: Paper) -> str:
    return f"catalog/{p.family}/{slug(p.key)}.md"


def family_path(family: str) -> str:
    return f"catalog/{family}/index.md"


def _rel(from_path: str, to_path: str) -> str:
    """Relative link between two docs-relative Markdown paths (mkdocs resolves and validates it)."""
    a = Path(from_path).parent.parts
    b = Path(to_path).parts
    i = 0
    while i < len(a) and i < len(b) - 1 and a[i] == b[i]:
        i += 1
    return "/".join([".."] * (len(a) - i) + list(b[i:]))


class _TaskPaths:
    def __init__(self, tasks):
        self.map: dict[str, str] = {}
        used: set[str] = set()
        for t in tasks:
            s, n = slug(t), 2
            base = s
            while s in used or s == "index":
                s, n = f"{base}-{n}", n + 1
            used.add(s)
            self.map[t] = f"leaderboard/{s}.md"

    def __getitem__(self, task: str) -> str:
        return self.map[task]


def _budget_anchor(budget: str, dataset: str) -> str:
    return f"budget-{slug(budget)}-{slug(dataset)}"


# --------------------------------------------------------------------------- top level
def generate(catalog: Catalog, runs: pd.DataFrame | None, env: dict | None = None,
             implementations: dict[str, str] | None = None, repo_url: str | None = None,
             results_label: str = "results/snapshot") -> SiteSources:
    """Every generated page (Markdown) and plot (PNG bytes), keyed by its path under docs/."""
    implementations = implementations or {}
    every = aggregate(runs) if runs is not None and not runs.empty else None
    agg = _shared_only(every)   # the leaderboard pages show the shared tasks; paper settings go to paper pages
    out = SiteSources()
    tasks = _TaskPaths(sorted(agg["task"].astype(str).unique()) if agg is not None else [])
    settings = _paper_settings(catalog)
    verdicts = {p.key: [cl.judge(c, p.key, every, index=i, setting=settings.get(p.key)) for i, c in enumerate(p.claims)]
                for p in catalog.papers.values()}
    shared = {p.key: [cl.shared(c, p.key, every) for c in p.claims] for p in catalog.papers.values()}

    # catalog: index, one page per family, one per paper
    out.files["catalog/index.md"] = _catalog_index(catalog, verdicts)
    out.nav_catalog = ["catalog/index.md"]
    for family, papers in catalog.by_family().items():
        if not papers:
            continue
        out.files[family_path(family)] = _family_page(family, papers, verdicts)
        section = [family_path(family)]
        for p in papers:
            out.files[paper_path(p)] = _paper_page(p, verdicts[p.key], agg, implementations.get(p.key),
                                                   repo_url, tasks, catalog, shared[p.key])
            section.append(paper_path(p))
        out.nav_catalog.append({family.capitalize(): section})
    out.files["tags.md"] = _front_matter("Tags") + "# Tags\n\nEvery tag used in the catalog, with its papers.\n\n<!-- material/tags -->\n"

    # leaderboards
    out.files["leaderboard/index.md"] = _leaderboard_index(agg, tasks, results_label)
    out.nav_leaderboard = ["leaderboard/index.md"]
    if agg is not None:
        for task, df in agg.groupby("task", sort=True):
            path = tasks[str(task)]
            page, images = _task_page(str(task), df, catalog, path)
            out.files[path] = page
            out.files.update(images)
            out.nav_leaderboard.append(path)

    out.snippets["environment"] = _environment(env, runs, results_label)
    out.snippets["overview"] = _overview(catalog, agg, verdicts)
    return out


def _shared_only(agg: pd.DataFrame | None) -> pd.DataFrame | None:
    if agg is None or "setting" not in agg.columns:
        return agg
    keep = agg[agg["setting"].fillna("") == cl.SHARED]
    return None if keep.empty else keep.reset_index(drop=True)


def _paper_settings(catalog: Catalog) -> dict:
    """The paper settings beside the catalog (``<catalog>/settings/*.yaml``); none if it has no such folder."""
    from mcbench.catalog.settings import SettingError, load_all

    root = Path(catalog.root) / "settings" if catalog.root is not None else None
    if root is None or not root.is_dir():
        return {}
    try:
        return load_all(root)
    except SettingError:  # `mcbench catalog validate` and the tests report it; the site still builds
        return {}


def write_tree(sources: SiteSources, out_dir: Path) -> list[Path]:
    """Write the generated files under ``out_dir`` (e.g. to inspect them); returns the paths written."""
    written = []
    for rel, content in sources.files.items():
        path = Path(out_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


# --------------------------------------------------------------------------- catalog pages
def _claims_summary(verdicts: list[cl.Verdict]) -> str:
    if not verdicts:
        return "no claims"
    counts = Counter(v.status for v in verdicts)
    return " · ".join(f"{counts[s]} {s}" for s in cl.CLAIM_STATUSES if counts[s])


def _catalog_index(catalog: Catalog, verdicts) -> str:
    here = "catalog/index.md"
    fams = catalog.by_family()
    rows = []
    for family in CATALOG_FAMILIES:
        papers = fams.get(family, [])
        if not papers:
            continue
        st = Counter(p.status for p in papers)
        rows.append([f"[{family.capitalize()}]({_rel(here, family_path(family))})", str(len(papers)),
                     str(st["implemented"]), str(st["planned"]), str(st["catalog-only"]), md(FAMILY_BLURB.get(family, ""))])
    all_v = [v for vs in verdicts.values() for v in vs]
    counts = Counter(v.status for v in all_v)
    status_rows = [[status_badge(s), str(counts[s])] for s in cl.CLAIM_STATUSES]
    papers = sorted(catalog.papers.values(), key=lambda p: (p.year, p.key))
    all_rows = [[f"[{md(p.title)}]({_rel(here, paper_path(p))})", str(p.year), p.family, md(p.status),
                 md(_claims_summary(verdicts[p.key]))] for p in papers]
    return (_front_matter("Catalog", hide=["toc"]) + "# Catalog\n\n"
            f"{len(catalog.papers)} papers on neural-network compression, one page each: the paper's own claims next to "
            "what mcbench measures, the implementation and the BibTeX. Browse by family below or by [tag](../tags.md).\n\n"
            "## Families\n\n"
            + _table(["Family", "Papers", "Implemented", "Planned", "Catalog only", "What it is"], rows,
                     ["l", "r", "r", "r", "r", "l"])
            + "\n## Claims by status\n\n" + _table(["Status", "Claims"], status_rows, ["l", "r"])
            + "\n## All papers\n\nClick a column header to sort.\n\n"
            + _table(["Paper", "Year", "Family", "Status", "Claims"], all_rows, ["l", "r", "l", "l", "l"]))


def _family_page(family: str, papers: list[Paper], verdicts) -> str:
    here = family_path(family)
    rows = [[f"[{md(p.title)}]({_rel(here, paper_path(p))})", str(p.year), md(p.venue or ("arXiv" if p.eprint else "")),
             md(p.status), md(", ".join(p.tags)), md(_claims_summary(verdicts[p.key]))]
            for p in sorted(papers, key=lambda p: (p.year, p.key))]
    return (_front_matter(family.capitalize(), hide=["toc"]) + f"# {family.capitalize()}\n\n{md(FAMILY_BLURB.get(family, ''))}\n\n"
            + _table(["Paper", "Year", "Venue", "Status", "Tags", "Claims"], rows, ["l", "r", "l", "l", "l", "l"]))


def _complexity_section(p: Paper) -> str:
    """The paper's own configurations: its table's figures next to ours, counted on the meta device."""
    rows = []
    for c in p.complexity:
        try:
            from mcbench.benchmarks.complexity import build_paper_config, count

            ours = count(build_paper_config(p.key, c.method_config, c.input[0], c.input[1:], c.num_classes),
                         c.input[0], c.input[1:])
            mine = (f"{ours.params_count / 1e6:.2f}M", f"{ours.macs / 1e6:.0f}M")
        except Exception:  # noqa: BLE001 - a method not importable here; the tests check it
            mine = (DASH, DASH)
        paper_params = f"{c.params / 1e6:.1f}M" if c.params is not None else "not given"
        paper_madds = f"{c.mult_adds / 1e6:.0f}M" if c.mult_adds is not None else "not given"
        rows.append([md(c.name), md(c.where), paper_params, mine[0], paper_madds, mine[1],
                     md(c.note) or DASH])
    return ("## Paper configurations\n\nThe paper's own networks at the paper's input size, built with our implementation "
            "on the meta device and counted (MACs by `torch.utils.flop_counter`; `tests/test_paper_configs.py` requires "
            "each within 5% unless a note says why).\n\n"
            + _table(["Configuration", "Where", "Params (paper)", "Params (ours)", "Mult-adds (paper)", "MACs (ours)",
                      "Note"], rows, ["l", "l", "r", "r", "r", "r", "l"]) + "\n")


def _fmt_measure(v: float | None, measure: str) -> str:
    if v is None:
        return DASH
    unit = cl.MEASURE_LABEL.get(measure, ("", ""))[1]
    return f"{v:+.2f} pp" if unit == "pp" else f"{sig(v)}×"


def _paper_page(p: Paper, verdicts: list[cl.Verdict], agg, source: str | None, repo_url: str | None,
                tasks: _TaskPaths, catalog: Catalog, shared: list[cl.Verdict] | None = None) -> str:
    here = paper_path(p)
    tags = [t for t in (tag(t) for t in p.tags) if t]
    meta = {"tags": tags} if tags else {}
    s = [_front_matter(p.title, hide=["toc"], **meta), f"# {md(p.title)}\n\n"]
    venue = p.venue or ("arXiv preprint" if p.eprint else None)
    facts = [
        ("Authors", md(", ".join(p.authors)) if p.authors else DASH),
        ("Venue", md(venue) if venue else DASH),
        ("Year (first public version)", str(p.year)),
        ("Family", f"[{p.family.capitalize()}]({_rel(here, family_path(p.family))})"),
        ("Key", code(p.key)),
        ("Catalog status", md(p.status) + (f" — {md(p.reason)}" if p.reason else "")),
    ]
    links = []
    if p.arxiv_url:
        links.append(external(f"arXiv:{p.eprint}", p.arxiv_url))
    if p.doi_url:
        links.append(external(f"DOI {p.doi}", p.doi_url))
    if p.url and not links:
        links.append(external("paper", p.url))
    facts.append(("Links", " · ".join(links) if links else DASH))
    s.append("".join(f"**{k}:** {v}  \n" for k, v in facts).rstrip() + "\n\n")

    s.append("## Summary\n\n" + (md(p.summary) or DASH) + "\n\n")
    if getattr(p, "venue_note", None):
        s.append(f"*Venue note:* {md(p.venue_note)}\n\n")

    # claims next to our figures
    s.append("## Claims and our measurements\n\n")
    if not p.claims:
        s.append("This entry records no headline claims.\n\n")
    else:
        shared = shared or [cl.Verdict(cl.NOT_YET_RUN, scope="shared task") for _ in p.claims]
        setting = next((v.setting for v in verdicts if v.setting is not None), None)
        if setting is not None:
            s.append(f"Ours (paper setting): dataset {code(setting.dataset)}, budget {code(setting.budget)}, mean over "
                     f"{setting.n_seeds} seed{'s' if setting.n_seeds != 1 else ''}, from `mcbench reproduce {p.key}`. ")
        on_task = next((v.setting for v in shared if v.setting is not None), None)
        if on_task is not None and on_task.task in tasks.map:
            lb = _rel(here, tasks[on_task.task]) + "#" + _budget_anchor(on_task.budget, on_task.dataset)
            s.append(f"Shared task: {code(on_task.task)}, dataset {code(on_task.dataset)}, budget "
                     f"{code(on_task.budget)} ([leaderboard]({lb})), for comparing methods, not a verdict. ")
        if setting is None and on_task is None and any(c.compare for c in p.claims):
            s.append("*Not yet run:* the results snapshot has no rows for this method, so every comparable claim "
                     "is **not yet run**. ")
        s.append("Ratios and deltas use the measurement definitions of the [methodology](../../methodology.md).\n\n")
        rows = []
        for i, (c, v, sh) in enumerate(zip(p.claims, verdicts, shared), 1):
            cmp_ = c.compare
            rows.append([f"{i}. {md(c.metric)}", md(f"{c.value:g} {c.unit}"), md(c.dataset),
                         md(cl.MEASURE_LABEL.get(cmp_.measure, (cmp_.measure,))[0]
                            + ("" if cmp_.reference == "baseline" else f" (vs {cmp_.reference})")) if cmp_ else DASH,
                         f"{_fmt_measure(cmp_.expected, cmp_.measure)} ± {cmp_.tolerance:g}" if cmp_ else DASH,
                         _fmt_measure(v.ours, cmp_.measure) if cmp_ else DASH, status_badge(v.status), md(v.reason),
                         _fmt_measure(sh.ours, cmp_.measure) if cmp_ else DASH])
        s.append(_table(["Claim", "Paper's figure", "Dataset", "Compared as", "Expected ± tol.", "Ours (paper setting)",
                         "Status", "Why", "Ours (shared task)"], rows, ["l", "r", "l", "l", "r", "r", "l", "l", "r"]))
        s.append("\n**Claim details**\n\n")
        for i, c in enumerate(p.claims, 1):
            bits = [f"model: {md(c.model)}" if c.model else "", f"baseline: {md(c.baseline)}" if c.baseline else "",
                    f"where: {md(c.where)}" if c.where else "", f"conditions: {md(c.conditions)}" if c.conditions else ""]
            s.append(f"{i}. **{md(c.metric)}** — " + "; ".join(b for b in bits if b) + "\n")
        s.append("\nStatuses: *reproduced* = within the tolerance; *same direction* = on the same side of no change "
                 "(0 pp, 1×) as the paper; *not reproduced*; *not comparable* = no like-with-like comparison (the "
                 "claim has no measure mcbench can take, no paper setting reproduces it, or the data is a substitute: "
                 "the *Why* column says which); *not yet run* = no results in the snapshot. Verdicts come only from the "
                 "paper's own setting; the shared-task figure compares methods with each other.\n\n")
    if p.complexity:
        s.append(_complexity_section(p))

    if p.discrepancies:
        s.append("## Discrepancies\n\nWhere reading lists misreport this paper, and what the catalog records instead:\n\n")
        s += [f"- {md(d)}\n" for d in p.discrepancies]
        s.append("\n")

    # implementation
    s.append("## Implementation\n\n")
    if source:
        src = external(source, f"{repo_url.rstrip('/')}/blob/main/{source}") if repo_url else code(source)
        task, budget = "fmnist", "default"
        picked = cl.pick_setting(agg, p.key)
        if picked is not None:
            task, budget = str(picked[0]["task"]), str(picked[0]["budget"])
        s.append(f"**Registry key:** {code(p.key)}  \n**Source:** {src}\n\nRun it:\n\n")
        s.append(fence(RUN_COMMAND.format(key=p.key, task=task, budget=budget), "bash") + "\n")
    else:
        s.append(_admonition("info", "Status: not implemented",
                             f"No method is registered under {code(p.key)}. Catalog status: {md(p.status)}."
                             + (f" Reason: {md(p.reason)}" if p.reason else "")))

    # all our rows for this method
    if agg is not None and (agg["method"] == p.key).any():
        s.append("## Results\n\nEvery task and budget in the snapshot (mean over seeds; Δ against that setting's baseline).\n\n")
        mine = agg[agg["method"] == p.key]
        rows = []
        for _, r in mine.iterrows():
            base = cl._reference_for(agg, r)
            delta = cl.measure_value("acc_delta_pp", r, base)
            lb = _rel(here, tasks[str(r["task"])]) + "#" + _budget_anchor(str(r["budget"]), str(r["dataset"]))
            rows.append([f"[{md(r['task'])} / {md(r['budget'])}]({lb}) ({md(r['dataset'])})", str(int(r["n_seeds"])),
                         pm(r.get("top1_acc_pct_mean"), r.get("top1_acc_pct_std"), 2),
                         f"{delta:+.2f}" if delta is not None else DASH,
                         sig(r.get("size_bytes_disk_mean") / 1e3 if _isnum(r.get("size_bytes_disk_mean")) else None),
                         sig(r.get("macs_mean") / 1e6 if _isnum(r.get("macs_mean")) else None),
                         sig(r.get("latency_ms_p50_cpu_b1_mean")), sig(r.get("speedup_cpu_b1_mean")),
                         _compression(r)])
        s.append(_table(["Task / budget (dataset)", "Seeds", "Top-1 %", "Δ pp", "Disk (kB)", "MACs (M)",
                         "p50 b1 (ms)", "Speedup b1", "Compression"], rows,
                        ["l", "r", "r", "r", "r", "r", "r", "r", "l"]) + "\n")

    if p.reading_list:
        s.append("## Reading lists\n\n")
        for item in p.reading_list:
            s.append(f"- {code(item.get('file', ''))}: {md(item.get('as_listed', ''))}\n")
        s.append("\n")

    s.append("## BibTeX\n\n" + fence(p.bibtex or "", "bibtex"))
    return "".join(s)


def _compression(r) -> str:
    real = r.get("compression_real")
    word = "real" if (real is True or str(real).lower() == "true") else "simulated" if _known(real) else DASH
    note = r.get("compression_note")
    if isinstance(note, str) and note.strip():
        return f'<abbr title="{md(note)}">{word}</abbr>'
    return word


def _known(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


# --------------------------------------------------------------------------- leaderboards
def _leaderboard_index(agg, tasks: _TaskPaths, results_label: str) -> str:
    s = _front_matter("Leaderboards") + "# Leaderboards\n\n"
    if agg is None:
        return s + _admonition("warning", "Not yet run",
                               f"There is no results snapshot ({code(results_label + '/runs.csv')}), so there is no "
                               f"leaderboard yet and every claim is *not yet run*. Run the benchmarks and "
                               f"{code(SNAPSHOT_HINT)} to write one.")
    s += ("One page per task. Each row is a method's mean over seeds; sort any column by clicking its header. "
          "See the [methodology](../methodology.md) for how each figure is measured.\n\n")
    rows = []
    for (task, budget, dataset), df in agg.groupby(["task", "budget", "dataset"], sort=True):
        base = df[df["method"] == cl.BASELINE]
        methods = df[~df["method"].isin([cl.BASELINE, "student", "teacher"]) & ~df["method"].astype(str).str.contains(":")]
        best = methods.sort_values("top1_acc_pct_mean", ascending=False).head(1)
        rows.append([f"[{md(task)}]({_rel('leaderboard/index.md', tasks[str(task)])}#{_budget_anchor(str(budget), str(dataset))})",
                     md(budget), md(dataset), str(len(methods)),
                     fixed(base["top1_acc_pct_mean"].iloc[0]) if len(base) else DASH,
                     (md(best["method"].iloc[0]) + f" ({fixed(best['top1_acc_pct_mean'].iloc[0])})") if len(best) else DASH])
    return s + _table(["Task", "Budget", "Dataset", "Methods", "Baseline top-1 %", "Best method (top-1 %)"], rows,
                      ["l", "l", "l", "r", "r", "l"])


def _task_page(task: str, df: pd.DataFrame, catalog: Catalog, here: str) -> tuple[str, dict[str, bytes]]:
    s = [_front_matter(f"Leaderboard: {task}", hide=["navigation", "toc"]), f"# Leaderboard: {md(task)}\n\n",
         "Each row is a method's mean over seeds; **Top-1 %** is test accuracy, mean ± sample std over seeds, "
         "and **Δ pp** its difference from the task baseline in percentage points. **Params nz**: nonzero parameters. "
         "*Theoretical*: **MACs** (FLOPs / 2 at the task input size). *Measured*: **Disk** (bytes on disk of the "
         "serialized deployable model), CPU latency percentiles **p50/p90** in ms at batch 1 and 64, and "
         "**Speedup b1** (baseline p50 / method p50, timed side by side in the same run). *Simulated* compression "
         "(masks, fake quantization) shrinks nothing at run time; hover over it for the method's note. "
         "Click a column header to sort.\n\n"]
    images: dict[str, bytes] = {}
    for (budget, dataset), d in df.groupby(["budget", "dataset"], sort=True):
        budget, dataset = str(budget), str(dataset)
        s.append(f"## Budget {md(budget)} · {md(dataset)} {{#{_budget_anchor(budget, dataset)}}}\n\n")
        s.append('<div class="mc-leaderboard" markdown>\n\n' + _task_table(d, catalog, here) + "\n</div>\n\n")
        s.append('<div class="mc-plots" markdown>\n\n')
        stem = f"{slug(task)}-{slug(budget)}-{slug(dataset)}"
        for kind, cost, xlabel, title in (
            ("latency", "latency_ms_p50_cpu_b1_mean", "p50 latency, CPU batch 1 (ms, measured)", "accuracy vs CPU latency"),
            ("size", "size_bytes_disk_mean", "serialized size on disk (bytes, measured)", "accuracy vs size on disk"),
        ):
            rel = f"img/{stem}-{kind}.png"
            images[f"leaderboard/{rel}"] = _plot_png(d, cost, f"{task} ({budget}): {title}", xlabel)
            s.append(f"![{md(task)} {md(budget)}: {title}]({rel}){{ loading=lazy }}\n")
        s.append("\n</div>\n\n")
    return "".join(s), images


def _plot_png(d: pd.DataFrame, cost: str, title: str, xlabel: str) -> bytes:
    safe = d.copy()
    safe["method"] = safe["method"].astype(str).str.replace("$", r"\$", regex=False)  # no mathtext from data
    logx = bool((pd.to_numeric(safe[cost], errors="coerce") > 0).all())
    with tempfile.TemporaryDirectory(prefix="mcbench-plot-") as tmp:
        path = pareto_plot(safe, cost, Path(tmp) / "plot.png", title.replace("$", r"\$"), xlabel, logx=logx)
        return path.read_bytes()


def _task_table(d: pd.DataFrame, catalog: Catalog, here: str) -> str:
    base = d[d["method"] == cl.BASELINE]
    base_top1 = float(base["top1_acc_pct_mean"].iloc[0]) if len(base) and _isnum(base["top1_acc_pct_mean"].iloc[0]) else None
    p_scale, p_unit = scale_for(d.get("params_nonzero_mean", []))
    m_scale, m_unit = scale_for(d.get("macs_mean", []))
    s_scale, s_unit = scale_for(d.get("size_bytes_disk_mean", []), ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")))
    s_unit = s_unit or "B"
    cuda = "latency_ms_p50_cuda_b1_mean" in d.columns and d["latency_ms_p50_cuda_b1_mean"].notna().any()
    header = ["Method", "Seeds", "Top-1 %", "Δ pp", "Compression", f"Params nz ({p_unit or '#'})",
              f"Disk ({s_unit})", f"MACs ({m_unit or '#'})", "p50 b1 ms", "p90 b1 ms", "p50 b64 ms", "p90 b64 ms",
              "Speedup b1"] + (["CUDA p50 b1 ms"] if cuda else [])
    rows = []
    for _, r in d.iterrows():
        m = str(r["method"])
        if m in catalog.papers:
            name = f"[{md(m)}]({_rel(here, paper_path(catalog.papers[m]))})"
        elif m in (cl.BASELINE, "student", "teacher"):
            name = f"*{md(m)}*"
        elif m.partition(":")[0] in catalog.papers:  # a method's control row, e.g. "key:l1"
            parent, _, kind = m.partition(":")
            name = f"[{md(parent)}]({_rel(here, paper_path(catalog.papers[parent]))}) *control: {md(kind)}*"
        else:
            name = md(m)
        top1 = r.get("top1_acc_pct_mean")
        delta = float(top1) - base_top1 if base_top1 is not None and _isnum(top1) and m != cl.BASELINE else None

        def scaled(col, scale):
            v = r.get(col)
            return sig(float(v) / scale) if _isnum(v) else DASH

        rows.append([name, str(int(r["n_seeds"])), pm(top1, r.get("top1_acc_pct_std"), 2),
                     f"{delta:+.2f}" if delta is not None else DASH, _compression(r),
                     scaled("params_nonzero_mean", p_scale), scaled("size_bytes_disk_mean", s_scale),
                     scaled("macs_mean", m_scale),
                     sig(r.get("latency_ms_p50_cpu_b1_mean")),
                     sig(r.get("latency_ms_p90_cpu_b1_mean")),
                     sig(r.get("latency_ms_p50_cpu_b64_mean")),
                     sig(r.get("latency_ms_p90_cpu_b64_mean")),
                     sig(r.get("speedup_cpu_b1_mean"))]
                    + ([sig(r.get("latency_ms_p50_cuda_b1_mean"))] if cuda else []))
    return _table(header, rows, ["l", "r", "r", "r", "l"] + ["r"] * (len(header) - 5))


# --------------------------------------------------------------------------- snippets for hand-written pages
def _environment(env: dict | None, runs: pd.DataFrame | None, results_label: str) -> str:
    if env is None and (runs is None or runs.empty):
        return _admonition("warning", "Not yet run",
                           f"There is no results snapshot ({code(results_label)}) yet, so there is no environment to "
                           f"report. {code(SNAPSHOT_HINT)} writes {code('runs.csv')}, {code('runs.json')} and "
                           f"{code('env.json')}.")
    s = ""
    if env:
        rows = [[code(k), md(v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str))]
                for k, v in env.items()]
        s += f"From {code(results_label + '/env.json')}:\n\n" + _table(["Field", "Value"], rows)
    else:
        s += f"The snapshot has no {code('env.json')}.\n"
    if runs is not None and not runs.empty:
        def distinct(col):
            return md(", ".join(sorted(runs[col].dropna().astype(str).unique()))) if col in runs.columns else DASH
        rows = [["Result rows", str(len(runs))], ["Tasks", distinct("task")], ["Datasets used", distinct("dataset")],
                ["Budgets", distinct("budget")], ["Seeds", distinct("seed")], ["CPU", distinct("cpu_model")],
                ["CPU threads", distinct("cpu_threads")], ["Torch", distinct("torch_version")],
                ["Git commit", distinct("git_commit")], ["Device", distinct("device")]]
        s += "\nAs recorded in the result rows themselves:\n\n" + _table(["", ""], rows)
    return s


def _overview(catalog: Catalog, agg, verdicts) -> str:
    counts = Counter(v.status for vs in verdicts.values() for v in vs)
    n_claims = sum(counts.values())
    runs_line = ("no results snapshot yet: every claim is *not yet run*" if agg is None else
                 f"{agg['method'].nunique()} methods measured on {agg['task'].nunique()} task(s)")
    return (f"- **{len(catalog.papers)}** papers in the [catalog](catalog/index.md), "
            f"{sum(p.status == 'implemented' for p in catalog.papers.values())} implemented\n"
            f"- **{n_claims}** claims: " + (", ".join(f"{counts[s]} {s}" for s in cl.CLAIM_STATUSES if counts[s]) or "none")
            + f"\n- [Leaderboards](leaderboard/index.md): {runs_line}\n")
