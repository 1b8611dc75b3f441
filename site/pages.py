"""Generate the site's Markdown pages and Pareto plots from a Catalog and result rows.

Pure functions: :func:`generate` takes the catalog, the runs DataFrame (or None: no snapshot yet),
the snapshot environment and the registry's source files, and returns every generated file as
``{path relative to docs/: str | bytes}`` plus the navigation for them. :func:`write_tree` writes
that mapping into a directory. Nothing here runs a model; every string that comes from the
catalog or the results goes through :mod:`mcbench.site.escape`.
"""
from __future__ import annotations

import dataclasses
import html
import json
import math
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from mcbench.catalog.model import CATALOG_FAMILIES, Catalog, Paper
from mcbench.benchmarks.leaderboard import aggregate, json_object
from mcbench.site import claims as cl
from mcbench.site import board, methodology, plots
from mcbench.site import text as tx
from mcbench.site.escape import code, external, fence, md, slug, tag
from mcbench.site.fmt import DASH, fixed, isnum, pm, scale_for, sig  # noqa: F401 (re-exported)

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
@dataclass
class SiteSources:
    files: dict[str, str | bytes] = field(default_factory=dict)
    nav_catalog: list = field(default_factory=list)
    nav_leaderboard: list = field(default_factory=list)
    snippets: dict[str, str] = field(default_factory=dict)   # "<!-- mcbench:NAME -->" markers in hand-written pages


# --------------------------------------------------------------------------- formatting (display only)
_isnum = isnum


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
@dataclass
class Links:
    """Where source links point: ``repo_url`` (None: no links) at the snapshot's ``commit``."""

    repo_url: str | None = None
    commit: str | None = None        # the snapshot's commit, "-dirty" removed
    dirty: bool = False

    def source(self, path: str) -> str:
        if not self.repo_url:
            return code(path)
        return external(path, f"{self.repo_url.rstrip('/')}/blob/{self.commit or 'main'}/{path}")


def snapshot_commit(env: dict | None, runs: pd.DataFrame | None) -> tuple[str | None, bool]:
    """The commit the snapshot was produced at and whether its tree was dirty (env.json, else the rows)."""
    commit = (env or {}).get("git_commit")
    if not commit and runs is not None and "git_commit" in runs.columns:
        values = sorted(runs["git_commit"].dropna().astype(str).unique())
        commit = values[-1] if values else None
    if not commit:
        return None, False
    commit = str(commit)
    return commit.removesuffix("-dirty"), commit.endswith("-dirty")


def generate(catalog: Catalog, runs: pd.DataFrame | None, env: dict | None = None,
             implementations: dict[str, str] | None = None, repo_url: str | None = None,
             results_label: str = "results/snapshot", results_files: dict[str, bytes] | None = None,
             complexity: dict | None = None) -> SiteSources:
    """Every generated page (Markdown), plot (SVG + CSV) and download, keyed by its path under docs/."""
    implementations = implementations or {}
    commit, dirty = snapshot_commit(env, runs)
    links = Links(repo_url, commit, dirty)
    lists = tx.load_reading_lists(catalog.root)
    every = _with_configs(aggregate(runs), runs) if runs is not None and not runs.empty else None
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
        papers = sorted(papers, key=lambda p: (p.year, p.key))   # the sidebar lists a family's papers by year
        out.files[family_path(family)] = _family_page(family, papers, verdicts)
        section = [family_path(family)]
        for p in papers:
            out.files[paper_path(p)] = _paper_page(p, verdicts[p.key], agg, implementations.get(p.key),
                                                   links, tasks, catalog, shared[p.key], lists, complexity, every)
            section.append({_nav_label(f"{p.year} · {p.short_name}"): paper_path(p)})
        out.nav_catalog.append({family.capitalize(): section})
    out.files["tags.md"] = _tags_page(catalog)

    # leaderboards
    warning = dirty_warning(env, runs, links)
    out.files["leaderboard/index.md"] = _with_warning(_leaderboard_index(agg, tasks, results_label, catalog), warning)
    out.nav_leaderboard = ["leaderboard/index.md"]
    if agg is not None:
        for task, df in agg.groupby("task", sort=True):
            path = tasks[str(task)]
            page, images = _task_page(str(task), df, catalog, path)
            out.files[path] = _with_warning(page, warning)
            out.files.update(images)
            out.nav_leaderboard.append(path)

    out.files.update(downloads(catalog, results_files or {}))
    out.snippets["environment"] = _environment(env, runs, results_label, links)
    out.snippets["setup"] = methodology.snippet(runs, results_label)
    out.snippets["overview"] = warning + _overview(catalog, agg, verdicts)
    return out


def _with_warning(page: str, warning: str) -> str:
    """``warning`` right under the page's first heading."""
    if not warning:
        return page
    head_end = page.index("\n\n", page.index("\n# ")) + 2
    return page[:head_end] + warning + page[head_end:]


def _with_configs(agg: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``agg`` with each row's ``config_json`` (the latest config's, the one its means are over)."""
    if "config_json" not in runs.columns or agg.empty:
        return agg
    from mcbench.benchmarks.leaderboard import GROUP, latest_configs

    latest = latest_configs(runs)
    keys = [c for c in GROUP if c in latest.columns and c in agg.columns]
    carried = [c for c in ("config_json", "extra_json", "control_of") if c in latest.columns]
    configs = latest.drop_duplicates(keys)[keys + carried]
    return agg.drop(columns=carried, errors="ignore").merge(configs, on=keys, how="left")


def _nav_label(text: str) -> str:
    """A sidebar label, HTML-escaped: the theme prints nav titles unescaped (sidebar, tabs, footer text), and
    the footer's aria-label unescapes before escaping once (``site/overrides/partials/footer.html``)."""
    return html.escape(re.sub(r"\s+", " ", text).strip(), quote=True) or "paper"


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
    all_rows = [[_paper_cell(p, here), md(_authors_short(p)), md(_venue_short(p)), str(p.year), p.family,
                 _status_cell(p), code(p.key), md(_claims_summary(verdicts[p.key]))] for p in papers]
    return (_front_matter("Catalog", hide=["toc"]) + "# Catalog\n\n"
            f"{len(catalog.papers)} papers on neural-network compression, one page each: the paper's own claims next to "
            "what mcbench measures, the implementation and the BibTeX. Browse by family below, by [tag](../tags.md), "
            "or filter the table of all papers. The whole catalog is one [BibTeX file](../downloads/mcbench.bib).\n\n"
            "## Families\n\n"
            + _table(["Family", "Papers", "Implemented", "Planned", "Catalog only", "What it is"], rows,
                     ["l", "r", "r", "r", "r", "l"])
            + "\n## Claims by status\n\n" + _table(["Status", "Claims"], status_rows, ["l", "r"])
            + "\n## All papers\n\n**★** marks an implemented paper. Filter by status, family or any text; "
              "click a column header to sort.\n\n"
            + _filter_controls(catalog)
            + '<div class="mc-papers" markdown>\n\n'
            + _table(["Paper", "Authors", "Venue", "Year", "Family", "Status", "Key", "Claims"], all_rows,
                     ["l", "l", "l", "r", "l", "l", "l", "l"]) + "\n</div>\n")


def _tags_page(catalog: Catalog) -> str:
    """The tag vocabulary (catalog/tags.yaml) with what each tag means and how many papers carry it, then the
    papers per tag."""
    from mcbench.catalog.loader import load_vocabulary

    vocabulary = load_vocabulary(Path(catalog.root)) if catalog.root is not None else None
    used = catalog.tags()
    s = _front_matter("Tags") + "# Tags\n\n"
    if vocabulary:
        rows = [[code(t), md(desc), str(len(used.get(t, [])))] for t, desc in sorted(vocabulary.items())]
        s += (f"A controlled vocabulary of {len(vocabulary)} tags (`catalog/tags.yaml`); each paper carries a few.\n\n"
              + _table(["Tag", "Meaning", "Papers"], rows, ["l", "l", "r"]) + "\n## Papers by tag\n\n")
    else:
        s += "Every tag used in the catalog, with its papers.\n\n"
    return s + "<!-- material/tags -->\n"


def _paper_cell(p: Paper, here: str) -> str:
    star = '<span class="mc-impl" title="implemented">★</span> ' if p.status == "implemented" else ""
    return f"{star}[{md(tx.plain_math(p.title))}]({_rel(here, paper_path(p))})"


def _status_cell(p: Paper) -> str:
    return f'<span class="mc-paper-status mc-paper-status--{slug(p.status)}">{md(p.status)}</span>'


def _authors_short(p: Paper) -> str:
    if not p.authors:
        return ""
    return ", ".join(p.authors[:3]) + (" et al." if len(p.authors) > 3 else "")


VENUE_ACRONYMS = ("CVPR", "ICCV", "ECCV", "ICLR", "ICML", "NeurIPS", "AAAI", "KDD", "BMVC", "DAC", "WACV")


def _venue_short(p: Paper) -> str:
    """``CVPR 2018``, ``ICLR 2018 workshop``, a journal's name, or ``arXiv``."""
    if not p.venue:
        return "arXiv" if p.eprint else ""
    acronym = next((a for a in VENUE_ACRONYMS if a.lower() in p.venue.lower()), None)
    if acronym is None:
        return p.venue
    workshop = " workshop" if "workshop" in p.venue.lower() else ""
    return f"{acronym} {p.year}{workshop}"


def _filter_controls(catalog: Catalog) -> str:
    """Select boxes and a text box over the papers table (javascripts/filter.js); without JS all rows show."""
    fams = [f for f in CATALOG_FAMILIES if any(p.family == f for p in catalog.papers.values())]
    from mcbench.catalog.model import STATUSES

    def select(name, label, options):
        opts = "".join(f'<option value="{html.escape(o)}">{html.escape(o)}</option>' for o in options)
        return (f'<label>{label} <select data-mc-filter="{name}" aria-label="Filter by {name}">'
                f'<option value="">all</option>{opts}</select></label>')

    return ('<div class="mc-filter" role="search">' + select("status", "Status", STATUSES)
            + select("family", "Family", fams)
            + '<label>Text <input type="search" data-mc-filter="text" placeholder="title, author, key" '
              'aria-label="Filter by text"></label> <span class="mc-filter-count" aria-live="polite"></span></div>\n\n')


def _family_page(family: str, papers: list[Paper], verdicts) -> str:
    here = family_path(family)
    rows = [[_paper_cell(p, here), str(p.year), md(_venue_short(p)),
             _status_cell(p), md(", ".join(p.tags)), md(_claims_summary(verdicts[p.key]))]
            for p in sorted(papers, key=lambda p: (p.year, p.key))]
    return (_front_matter(family.capitalize(), hide=["toc"]) + f"# {family.capitalize()}\n\n{md(FAMILY_BLURB.get(family, ''))}\n\n"
            + _table(["Paper", "Year", "Venue", "Status", "Tags", "Claims"], rows, ["l", "r", "l", "l", "l", "l"]))


def _off_pct(ours, paper) -> str:
    return DASH if ours is None or paper is None else f"{(ours - paper) / paper * 100:+.1f}%"


def _complexity_section(p: Paper, measured: dict | None = None) -> str:
    """The paper's own configurations: the paper's figures from the record, ours from the snapshot's
    ``complexity.json`` (the site never builds a network; ``tests/test_paper_configs.py`` checks that file
    against a fresh count)."""
    measured = measured or {}
    ours = {c.name: measured.get((p.key, c.name)) for c in p.complexity}
    timed = any(o and o.get("latency_ms_p50_cpu_b1") is not None for o in ours.values())
    rows = []
    for c in p.complexity:
        o = ours[c.name] or {}
        row = [md(c.name), md(c.where),
               f"{c.params / 1e6:.2f}M" if c.params is not None else "not given",
               f"{o['params_count'] / 1e6:.2f}M" if "params_count" in o else DASH, _off_pct(o.get("params_count"), c.params),
               f"{c.mult_adds / 1e6:.0f}M" if c.mult_adds is not None else "not given",
               f"{o['macs'] / 1e6:.0f}M" if "macs" in o else DASH, _off_pct(o.get("macs"), c.mult_adds),
               f"{c.tolerance_pct:g}%"]
        if timed:
            v = o.get("latency_ms_p50_cpu_b1")
            row.append(f"{v:.1f}" if v is not None else DASH)
        rows.append(row + [md(c.note) or DASH])
    head = ["Configuration", "Where", "Params (paper)", "Params (ours)", "Δ", "Mult-adds (paper)", "Mult-adds (ours)",
            "Δ", "Tolerance"] + (["p50 ms, batch 1 (CPU)"] if timed else []) + ["Note"]
    s = ("## Paper configurations\n\nThe paper's own networks at the paper's input size, built with our "
         "implementation and counted on the meta device (MACs by `torch.utils.flop_counter`). "
         "`tests/test_paper_configs.py` requires parameters and MACs within the tolerance of the paper's figures.\n\n"
         + _table(head, rows, ["l", "l", "r", "r", "r", "r", "r", "r", "r"] + (["r"] if timed else []) + ["l"]) + "\n")
    if not any(ours.values()):
        s += ("*Ours* is empty: the results snapshot has no `complexity.json` entry for this paper "
              "(`python scripts/complexity_report.py --latency --json results/snapshot/complexity.json` writes it).\n\n")
    elif timed:
        st = next(o for o in ours.values() if o)["setting"]
        paths = sorted({o["latency_path_cpu_b1"] for o in ours.values() if o and o.get("latency_path_cpu_b1")})
        s += (f"Latency: one image at the paper's input size, {md(str(st.get('weights', 'untrained weights')))} "
              "(no accuracy: these networks are not trained here), deploy form "
              f"({md('; '.join(paths))}), p50 of {st.get('runs', '?')} calls on {st.get('cpu_threads', '?')} "
              f"thread(s) of {md(str(st.get('cpu_model', 'an unrecorded CPU')))}, measured at commit "
              f"{code(str(st.get('git_commit') or 'unknown'))}. Compare it only with the other configurations in "
              "this table and on the other compact-network pages (same machine, same run), not with the paper's "
              "own device timings.\n\n")
    return s


def _fmt_measure(v: float | None, measure: str) -> str:
    if v is None:
        return DASH
    unit = cl.MEASURE_LABEL.get(measure, ("", ""))[1]
    return f"{v:+.2f} pp" if unit == "pp" else f"{sig(v)}×"


def _ours_cell(v: cl.Verdict, cmp_) -> str:
    """Our figure, and beside a ratio the top-1 change it came with (a compression figure never stands alone)."""
    if cmp_ is None:
        return DASH
    text = _fmt_measure(v.ours, cmp_.measure)
    if v.ours is not None and v.acc_delta_pp is not None:
        text += f" (top-1 {v.acc_delta_pp:+.2f} pp)"
    return text


def _paper_page(p: Paper, verdicts: list[cl.Verdict], agg, source: str | None, repo: Links,
                tasks: _TaskPaths, catalog: Catalog, shared: list[cl.Verdict] | None = None,
                lists: dict[str, dict] | None = None, complexity: dict | None = None,
                every: pd.DataFrame | None = None) -> str:
    """``agg``: the shared-task rows; ``every``: those and the paper-setting rows (for the sparse-kernel figures)."""
    here = paper_path(p)
    tags = [t for t in (tag(t) for t in p.tags) if t]
    meta = {"tags": tags} if tags else {}
    title = tx.plain_math(p.title)
    s = [_front_matter(title, hide=["toc"], **meta), f"# {md(title)}\n\n"]
    venue = p.venue or ("arXiv preprint" if p.eprint else None)
    facts = [
        ("Authors", md(", ".join(p.authors)) if p.authors else DASH),
        ("Venue", md(venue) if venue else DASH),
        ("Year", str(p.year) + (f" (first public version {p.first_public})" if p.first_public != p.year else "")),
        ("Family", f"[{p.family.capitalize()}]({_rel(here, family_path(p.family))})"),
        ("Key", code(p.key) + (f" · short name *{md(p.short_name)}*" if p.status == "implemented" else "")),
        ("Catalog status", md(p.status) + (f" — {md(p.reason)}" if p.reason else "")),
    ]
    if p.status == "implemented":
        facts.append(("Leaderboard tier", "extended: not in the main job (`mcbench run --tier all` runs it) — "
                      + md(p.tier_reason or "") if p.leaderboard_tier == "extended"
                      else "main: in the main job's default leaderboard"))
    links = []
    if p.arxiv_url:
        links.append(external(f"arXiv:{p.eprint}", p.arxiv_url))
    if p.doi_url:
        links.append(external(f"DOI {p.doi}", p.doi_url))
    if p.url and not links:
        links.append(external("paper", p.url))
    facts.append(("Links", " · ".join(links) if links else DASH))
    facts.append(("BibTeX", f"[{md(p.key)}.bib]({_rel(here, 'downloads/bib/' + slug(p.key) + '.bib')})"))
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
        s.append("Ratios and deltas use the measurement definitions of the [methodology](../../methodology.md). "
                 "Each figure is against the reference the claim names (*Compared as*; e.g. the student trained "
                 "alone), whereas the Δ pp of the *Results* table below is against the task baseline, so the two "
                 "can differ. Beside a ratio, *(top-1 … pp)* is the accuracy change that came with it. The tolerance is "
                 "stated per claim, and why it is that wide is said under *Claim details*: within it the claim counts "
                 "as reproduced.\n\n")
        rows = []
        for i, (c, v, sh) in enumerate(zip(p.claims, verdicts, shared), 1):
            cmp_ = c.compare
            rows.append([f"{i}. {md(tx.metric_words(c.metric))}", md(f"{c.value:g} {c.unit}"), md(c.dataset),
                         md(cl.MEASURE_LABEL.get(cmp_.measure, (cmp_.measure,))[0]
                            + ("" if cmp_.reference == "baseline" else f" (vs {cmp_.reference})")) if cmp_ else DASH,
                         f"{_fmt_measure(cmp_.expected, cmp_.measure)} {md(cmp_.tolerance_text())}" if cmp_ else DASH,
                         _ours_cell(v, cmp_), status_badge(v.status), md(v.reason), _ours_cell(sh, cmp_)])
        s.append(_table(["Claim", "Paper's figure", "Dataset", "Compared as", "Expected ± tol.", "Ours (paper setting)",
                         "Status", "Why", "Ours (shared task)"], rows, ["l", "r", "l", "l", "r", "r", "l", "l", "r"]))
        s.append("\n**Claim details**\n\n")
        for i, c in enumerate(p.claims, 1):
            bits = [f"model: {md(c.model)}" if c.model else "", f"baseline: {md(c.baseline)}" if c.baseline else "",
                    f"where: {md(c.where)}" if c.where else "", f"conditions: {md(c.conditions)}" if c.conditions else ""]
            if c.compare is not None:
                bits.append(f"tolerance {md(c.compare.tolerance_text())}: "
                            + (md(c.compare.tolerance_why) if c.compare.tolerance_why else
                               "*not justified in the catalog record, so no verdict*"))
                if c.compare.fixed_by:
                    bits.append(f"set by the configuration: {md(c.compare.fixed_by)}")
            s.append(f"{i}. **{md(tx.metric_words(c.metric))}** ({code(c.metric)}) — " + "; ".join(b for b in bits if b) + "\n")
        s.append("\nStatuses: *reproduced* = within the tolerance; *same direction* = on the same side of no change "
                 "(0 pp, 1×) as the paper; *not reproduced*; *not comparable* = no like-with-like comparison (the "
                 "claim has no measure mcbench can take, no paper setting reproduces it, the data is a substitute, the "
                 "figure is set by the configuration rather than produced by the method, or the tolerance is not "
                 "justified: the *Why* column says which); *not yet run* = no results in the snapshot. Verdicts come only from the "
                 "paper's own setting; the shared-task figure compares methods with each other.\n\n")
    if p.complexity:
        s.append(_complexity_section(p, complexity))

    if p.discrepancies:
        s.append("## Discrepancies\n\nWhere reading lists misreport this paper, and what the catalog records instead:\n\n")
        s += [f"- {md(d)}\n" for d in p.discrepancies]
        s.append("\n")

    # implementation
    s.append("## Implementation\n\n")
    if source:
        src = repo.source(source)
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
            lb = _rel(here, tasks[str(r["task"])]) + "#" + _budget_anchor(str(r["budget"]), str(r["dataset"]))
            rows.append([f"[{md(r['task'])} / {md(r['budget'])}]({lb}) ({md(r['dataset'])})",
                         *_result_cells(r, cl._reference_for(agg, r))])
        s.append(_table(["Task / budget (dataset)", *_RESULT_HEADER], rows, ["l", *_RESULT_ALIGN]) + "\n")
    s.append(_paper_setting_section(p.key, every))
    rows_all = every if every is not None else agg
    if rows_all is not None and "method" in rows_all.columns:
        s.append(_sparse_kernel_section(rows_all[rows_all["method"].str.split(":").str[0] == p.key]))

    if p.reading_list:
        s.append("## Reading lists\n\nHow the reading lists this catalog was built from show this paper:\n\n")
        for item in p.reading_list:
            s.append(f"- *{md(tx.reading_list_title(str(item.get('file', '')), lists or {}))}*: "
                     f"{tx.render_listed(str(item.get('as_listed', '')))}\n")
        s.append("\n")

    s.append("## BibTeX\n\n" + fence(p.bibtex or "", "bibtex"))
    return "".join(s)


_RESULT_HEADER = ["Seeds", "Top-1 % (R@1: retrieval)", "Δ pp", "Disk (kB)", "MACs (M)", "p50 b1 (ms)", "Speedup b1",
                  "Speedup b64", "Compression", "Config (as run)"]
_RESULT_ALIGN = ["r", "r", "r", "r", "r", "r", "r", "r", "l", "l"]


def _result_cells(r, base) -> list[str]:
    """One aggregated row's cells under ``_RESULT_HEADER``; ``base``: the baseline row it is compared with."""
    delta = cl.measure_value("acc_delta_pp", r, base) if base is not None else None
    return [str(int(r["n_seeds"])), _accuracy(r), f"{delta:+.2f}" if delta is not None else DASH,
            sig(r.get("size_bytes_disk_mean") / 1e3 if _isnum(r.get("size_bytes_disk_mean")) else None),
            sig(r.get("macs_mean") / 1e6 if _isnum(r.get("macs_mean")) else None),
            sig(r.get("latency_ms_p50_cpu_b1_mean")), sig(r.get("speedup_cpu_b1_mean")),
            sig(r.get("speedup_cpu_b64_mean")), _compression(r),
            methodology.config_text(methodology.config_of(r.get("config_json")).get("method_config") or {})]


def _paper_setting_section(key: str, every: pd.DataFrame | None) -> str:
    """Every row of this paper's own settings (``mcbench reproduce KEY``: the method, its controls and the setting's
    baseline), whether or not a claim is compared with it; Δ against the same setting's baseline."""
    if every is None or "setting" not in every.columns:
        return ""
    setting = every["setting"].fillna("").astype(str)
    own = every[setting.str.split("/").str[0] == key]
    if own.empty:
        return ""
    rows = []
    for name, rows_of in own.groupby("setting", sort=True):
        for _, r in rows_of.iterrows():
            base = None if r["method"] == cl.BASELINE else cl._reference_for(rows_of, r)
            rows.append([code(str(name)), md(str(r["method"])), f"{md(r['task'])} / {md(r['budget'])} ({md(r['dataset'])})",
                         *_result_cells(r, base)])
    return ("## Paper setting\n\nThe rows of `mcbench reproduce " + key + "` (the paper's own configuration on the "
            "stated data; Δ against that setting's baseline, trained in the same recipe):\n\n"
            + _table(["Setting", "Row", "Task / budget (dataset)", *_RESULT_HEADER], rows, ["l", "l", "l", *_RESULT_ALIGN])
            + "\n")


def _sparse_kernel_section(mine: pd.DataFrame) -> str:
    """Rows whose sparse linear layers were also timed on torch's CSR kernel (``extra_json["sparse_kernel"]``,
    written by the harness): the speedup over the same model on dense kernels, measured side by side."""
    lines = []
    for _, r in mine.iterrows():
        sk = json_object(r.get("extra_json")).get("sparse_kernel")
        if not isinstance(sk, dict):
            continue
        timed = []
        for b in ("b1", "b64"):
            e = sk.get(b) if isinstance(sk.get(b), dict) else {}
            if isnum(e.get("speedup_vs_dense")):
                timed.append(f"batch {b[1:]}: {sig(e['speedup_vs_dense'])}× ({sig(e.get('latency_ms_p50_cpu'))} vs "
                             f"{sig(e.get('dense_latency_ms_p50_cpu'))} ms, {md(str(e.get('path', '')))})")
        layers = sk.get("linear_csr_density") if isinstance(sk.get("linear_csr_density"), dict) else {}
        dens = ", ".join(f"{code(str(k))} {100 * float(v):.1f}% nonzero" for k, v in layers.items() if isnum(v))
        conv = f"; {md(str(sk['conv_note']))}" if sk.get("conv_note") else ""
        setting = str(r.get("setting") or "") if isinstance(r.get("setting"), str) else ""
        where = f"paper setting {code(setting)}" if setting else f"{md(r['task'])} / {md(r['budget'])}"
        lines.append(f"- {md(r['method'])}, {where} ({md(r['dataset'])}): " + ("; ".join(timed) or DASH)
                     + f". CSR layers: {dens or DASH}{conv}.\n")
    if not lines:
        return ""
    return ("## Sparse kernel\n\nThe same model with its sparse linear layers on torch's CSR kernel, timed side by "
            "side with its dense deploy form (speedup = dense p50 / CSR p50; one seed's row of the latest "
            "configuration; a row is listed only where a linear layer is at most half nonzero):\n\n"
            + "".join(lines) + "\n")


def _accuracy(r) -> str:
    """Top-1 (mean ± std); on a retrieval task, where top-1 is undefined, Recall@1 of the embedding."""
    if not _isnum(r.get("top1_acc_pct_mean")) and _isnum(r.get("recall_at_1_pct_mean")):
        return "R@1 " + pm(r.get("recall_at_1_pct_mean"), r.get("recall_at_1_pct_std"), 2)
    return pm(r.get("top1_acc_pct_mean"), r.get("top1_acc_pct_std"), 2)


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
def _leaderboard_index(agg, tasks: _TaskPaths, results_label: str, catalog: Catalog | None = None) -> str:
    s = _front_matter("Leaderboards") + "# Leaderboards\n\n"
    if agg is None:
        return s + _admonition("warning", "Not yet run",
                               f"There is no results snapshot ({code(results_label + '/runs.csv')}), so there is no "
                               f"leaderboard yet and every claim is *not yet run*. Run the benchmarks and "
                               f"{code(SNAPSHOT_HINT)} to write one.") + _extended_tier(catalog)
    s += ("One page per task. Each row is a method's mean over seeds; sort any column by clicking its header. "
          "See the [methodology](../methodology.md) for how each figure is measured.\n\n")
    rows = []
    for (task, budget, dataset), df in agg.groupby(["task", "budget", "dataset"], sort=True):
        base = df[df["method"] == cl.BASELINE]
        methods = compressed_methods(df)
        best = methods.sort_values("top1_acc_pct_mean", ascending=False).head(1)
        rows.append([f"[{md(task)}]({_rel('leaderboard/index.md', tasks[str(task)])}#{_budget_anchor(str(budget), str(dataset))})",
                     md(budget), md(dataset), str(len(methods)),
                     fixed(base["top1_acc_pct_mean"].iloc[0]) if len(base) else DASH,
                     (md(best["method"].iloc[0]) + f" ({fixed(best['top1_acc_pct_mean'].iloc[0])})") if len(best) else DASH])
    return s + _table(["Task", "Budget", "Dataset", "Methods", "Baseline top-1 %", "Best method (top-1 %)"], rows,
                      ["l", "l", "l", "r", "r", "l"]) + _extended_tier(catalog)


def _extended_tier(catalog: Catalog | None) -> str:
    """The methods the main job leaves out, each with its record's reason (empty when there are none)."""
    papers = [p for p in (catalog.papers.values() if catalog else ()) if p.leaderboard_tier == "extended"]
    if not papers:
        return ""
    rows = [[f"[{md(p.short_name)}]({_rel('leaderboard/index.md', paper_path(p))})", code(p.key), md(p.tier_reason or "")]
            for p in sorted(papers, key=lambda p: p.key)]
    return ("\n## Extended tier\n\nThese methods are registered and run with `mcbench run --tier all`, but the README's "
            "main job leaves them out to keep the whole default leaderboard near its hour on 2 cores; rows appear "
            "above only where they were run.\n\n" + _table(["Method", "Key", "Why it is not in the main job"], rows,
                                                           ["l", "l", "l"]))


PLOTS = (
    ("compression", plots.PlotSpec("size_bytes_theoretical_mean", "", 1.0,
                                   "compression vs baseline (×, theoretical: nonzero params × bits)",
                                   "accuracy vs compression", vs_baseline=True)),
    ("latency", plots.PlotSpec("latency_ms_p50_cpu_b1_mean", "latency_ms_p50_cpu_b1_std", 1.0,
                               "p50 latency, CPU, batch 1 (ms, measured)", "accuracy vs CPU latency")),
    ("latency-b64", plots.PlotSpec("latency_ms_p50_cpu_b64_mean", "latency_ms_p50_cpu_b64_std", 1.0,
                                   "p50 latency, CPU, batch 64 (ms, measured)", "accuracy vs CPU latency, batch 64")),
    ("size", plots.PlotSpec("size_bytes_disk_mean", "", 1e3, "size on disk (kB, measured)", "accuracy vs size on disk")),
)


def method_names(catalog: Catalog, methods) -> dict[str, str]:
    """Readable names for leaderboard rows: a paper's short name, a control as "name (control: kind)"."""
    out = {}
    for m in map(str, methods):
        parent, _, kind = m.partition(":")
        if m in catalog.papers:
            out[m] = catalog.papers[m].short_name
        elif kind and parent in catalog.papers:
            out[m] = f"{catalog.papers[parent].short_name} (control: {kind})"
        else:
            out[m] = m
    return out


def _task_table(d: pd.DataFrame, catalog: Catalog, here: str, names: dict[str, str]) -> str:
    def link_for(method: str) -> str | None:
        parent = method.partition(":")[0]
        return _rel(here, paper_path(catalog.papers[parent])) if parent in catalog.papers else None

    return board.task_table(d, names, link_for, REFERENCE_ROWS, cl.BASELINE)


def _task_page(task: str, df: pd.DataFrame, catalog: Catalog, here: str) -> tuple[str, dict[str, str | bytes]]:
    s = [_front_matter(f"Leaderboard: {task}", hide=["navigation", "toc"]), f"# Leaderboard: {md(task)}\n\n",
         "Each row is a method's mean over seeds (± the sample standard deviation). Names are the catalog's short "
         "names; hover for the BibTeX key, click for the paper's page. Click a column header to sort; hover it for "
         "its definition. The columns come in groups, left to right:\n\n"
         "- **Accuracy**: **Top-1 %** (test split, model selected on validation) and **Δ pp** against the task "
         "baseline.\n"
         "- **Size**: **Params nz** (nonzero parameters, counted); **Disk** (the serialized deployable model, "
         "measured); **Encoded** (the method's own encoded file, e.g. sparse + Huffman, measured, decoded and "
         "re-evaluated); **Theor.** (parameters × bits / 8, theoretical); **Bits/w** (bits per weight, theoretical).\n"
         "- **Compute**: **MACs** (theoretical); **Bits/act** (bits per activation as the row records it: 32 where the "
         "method never quantizes activations, — where the row does not say); **p50 b1 / b64** (median CPU latency in ms at batch 1 and 64, "
         "measured); **Speedup b1 / b64** (baseline p50 / method p50, timed side by side in the same run).\n"
         "- **Cost**: **Train s** (seconds of this method's own training stages, mean per seed) and **+ reused s** "
         "(training of the cached teacher/baseline it started from, counted once).\n"
         "- **Real?**: whether the **storage** saving and the **compute** saving are real (a smaller stored form; "
         "kernels that do less work) or **simulated** (masks, fake quantization: the dense float model is what runs). "
         "Hover for the method's note.\n\n"
         "The reference rows are the task's *baseline*, its *student* architecture trained alone and, where the "
         "snapshot has one, the distillation *teacher*.\n\n"]
    files: dict[str, str | bytes] = {}
    every_name = method_names(catalog, df["method"].unique())
    for (budget, dataset), d in df.groupby(["budget", "dataset"], sort=True):
        budget, dataset = str(budget), str(dataset)
        names = dict(every_name)
        for m, owner in plots.curves(d).items():   # a control at another compression level is a level, not a control
            if m != owner:
                names[m] = f"{every_name.get(owner, owner)} (level: {m.partition(':')[2]})"
        s.append(f"## Budget {md(budget)} · {md(dataset)} {{#{_budget_anchor(budget, dataset)}}}\n\n")
        s.append('<div class="mc-leaderboard" markdown>\n\n' + _task_table(d, catalog, here, names) + "\n</div>\n\n")
        stem = f"{slug(task)}-{slug(budget)}-{slug(dataset)}"
        for kind, spec in PLOTS:
            data = plots.plot_data(d, spec, names)
            if data.empty:
                continue
            title = f"{task} ({budget}): {spec.title}"
            spec = dataclasses.replace(spec, title=title)
            wide = plots.svg(data, spec, plots.WIDE_IN)
            narrow = plots.svg(data, spec, plots.NARROW_IN)
            files[f"leaderboard/img/{stem}-{kind}.svg"] = wide
            files[f"leaderboard/img/{stem}-{kind}.csv"] = data.to_csv(index=False)
            label = html.escape(title, quote=True)
            s.append(f'<figure class="mc-plot" id="plot-{stem}-{kind}">\n'
                     f'<div class="mc-plot-wide">{plots.inline(wide, label)}</div>\n'
                     f'<div class="mc-plot-narrow">{plots.inline(narrow, label)}</div>\n'
                     f'<figcaption>{html.escape(title)}. Filled markers: real compression; hollow: simulated. '
                     f'Bars: ± std over seeds. Solid lines join one method\'s compression levels (its own row and its '
                     f'level controls, each level named); dashed: the Pareto front. Download: <a href="img/{stem}-{kind}.svg">SVG</a> · '
                     f'<a href="img/{stem}-{kind}.csv">CSV</a></figcaption>\n</figure>\n\n')
    return "".join(s), files


# --------------------------------------------------------------------------- snippets for hand-written pages
def dirty_warning(env: dict | None, runs: pd.DataFrame | None, links: Links | None) -> str:
    """A warning box when the snapshot was exported from, or its rows produced by, a tree with uncommitted
    changes (``mcbench leaderboard --export`` refuses both unless ``--allow-dirty``); "" otherwise."""
    parts = []
    if links is not None and links.dirty:
        parts.append(f"it was exported at commit {code(links.commit)} with uncommitted changes ({code('-dirty')}), so "
                     "the source links point at a commit whose code is not exactly what ran")
    n_rows = 0
    if runs is not None and "git_commit" in runs.columns:
        n_rows = int(runs["git_commit"].astype(str).str.endswith("-dirty").sum())
    n_rows = max(n_rows, int((env or {}).get("rows_from_dirty_tree") or 0))
    if n_rows:
        parts.append(f"{n_rows} of its result rows were produced from a tree with uncommitted changes")
    if not parts:
        return ""
    return _admonition("warning", "Snapshot from a modified tree",
                       "This results snapshot was written with `--allow-dirty`: " + "; ".join(parts) + ".")


def _environment(env: dict | None, runs: pd.DataFrame | None, results_label: str, links: Links | None = None) -> str:
    if env is None and (runs is None or runs.empty):
        return _admonition("warning", "Not yet run",
                           f"There is no results snapshot ({code(results_label)}) yet, so there is no environment to "
                           f"report. {code(SNAPSHOT_HINT)} writes {code('runs.csv')}, {code('leaderboard.csv')} and "
                           f"{code('env.json')}.")
    s = dirty_warning(env, runs, links)
    if env:
        rows = [[md(tx.env_label(k)), tx.env_value(k, v)] for k, v in env.items()]
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
        s += "\nAs recorded in the result rows themselves:\n\n" + _table(["Field", "Value"], rows)
    return s


def _overview(catalog: Catalog, agg, verdicts) -> str:
    counts = Counter(v.status for vs in verdicts.values() for v in vs)
    n_claims = sum(counts.values())
    runs_line = ("no results snapshot yet: every claim is *not yet run*" if agg is None else
                 f"{compressed_methods(agg)['method'].nunique()} methods measured on {agg['task'].nunique()} task(s), "
                 "beside the task's reference networks")
    return (f"- **{len(catalog.papers)}** papers in the [catalog](catalog/index.md), "
            f"{sum(p.status == 'implemented' for p in catalog.papers.values())} implemented\n"
            f"- **{n_claims}** claims: " + (", ".join(f"{counts[s]} {s}" for s in cl.CLAIM_STATUSES if counts[s]) or "none")
            + f"\n- [Leaderboards](leaderboard/index.md): {runs_line}\n")


def compressed_methods(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of compression methods: not a reference network (baseline, student, teacher), not a control."""
    return df[~df["method"].isin(REFERENCE_ROWS) & ~df["method"].astype(str).str.contains(":")]


# --------------------------------------------------------------------------- downloads
def downloads(catalog: Catalog, results_files: dict[str, bytes]) -> dict[str, str | bytes]:
    """The downloads page and its files: the results snapshot as CSV and JSON, the catalog as one .bib and
    each paper's .bib."""
    out: dict[str, str | bytes] = {}
    papers = sorted(catalog.papers.values(), key=lambda p: p.key)
    out["downloads/mcbench.bib"] = "\n\n".join((p.bibtex or "").strip() for p in papers) + "\n"
    for p in papers:
        out[f"downloads/bib/{slug(p.key)}.bib"] = (p.bibtex or "").strip() + "\n"
    rows = []
    for name, data in sorted(results_files.items()):
        out[f"downloads/results/{name}"] = data
        rows.append([f"[{md(name)}](results/{name})", RESULT_FILES.get(name, ""), f"{len(data):,}"])
    s = (_front_matter("Downloads") + "# Downloads\n\n## Results\n\n")
    if rows:
        s += ("The committed results snapshot, as the leaderboards show it. One row per run (method × task × "
              "budget × seed) in `runs.*`; the per-method means over seeds in `leaderboard.csv`.\n\n"
              + _table(["File", "What", "Bytes"], rows, ["l", "l", "r"]))
    else:
        s += "There is no results snapshot yet.\n"
    s += (f"\n## Catalog\n\n- [mcbench.bib](mcbench.bib): all {len(papers)} entries in one BibTeX file "
          "(each entry's year is that of the version it cites).\n- One file per paper: "
          + ", ".join(f"[{md(p.key)}](bib/{slug(p.key)}.bib)" for p in papers) + ".\n")
    out["downloads/index.md"] = s
    return out


RESULT_FILES = {"runs.csv": "every result row (CSV)", "runs.json": "every result row (JSON, made from runs.csv)",
                "leaderboard.csv": "means and standard deviations over seeds (CSV)",
                "env.json": "the machine and software the rows were measured on (JSON)",
                "complexity.json": "our parameter and MAC counts, and batch-1 CPU latencies, of the papers' own "
                                   "network configurations (JSON)"}
REFERENCE_ROWS = (cl.BASELINE, "student", "teacher")
