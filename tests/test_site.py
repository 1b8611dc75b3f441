"""The generated site: strict mkdocs builds of the real and a fixture catalog, claim statuses,
a missing results snapshot, a broken link, and HTML escaping of hostile catalog/results text.

Result snapshots here are made up in the test (from ``benchmarks.record.COLUMNS``); nothing is
written to ``results/``. Builds run mkdocs in-process (strict) except one through ``mcbench site build``.
"""
from __future__ import annotations

import html
import json
import os
import random
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from mcbench.benchmarks.record import COLUMNS
from mcbench.site import claims as cl
from mcbench.site import escape
from mcbench.site.sources import CATALOG_ENV, MKDOCS_YML, REPO_ROOT, RESULTS_ENV

FIXTURES = Path(__file__).parent / "fixtures" / "site"
FIXTURE_CATALOG = FIXTURES / "catalog"
HOSTILE_KEY = "evil2020script"
HOSTILE_METHOD = "<img src=x onerror=alert('pwned-method')>"
os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")


# --------------------------------------------------------------------------- helpers (also used by the browser test)
def _loader_or_skip():
    try:
        from mcbench.catalog import load_catalog  # noqa: F401
    except ImportError as exc:  # the catalog loader is written in parallel with the site
        pytest.skip(f"mcbench.catalog.load_catalog is not importable yet ({exc})")


def fake_runs(methods: list[tuple[str, str, float, float, float, bool]], tasks=(("fmnist", "fashion-mnist"),),
              budgets=("default",), seeds=(0, 1, 2), setting: str = "") -> pd.DataFrame:
    """Made-up result rows with every ResultRow column. ``methods``: (method, family, top-1 %,
    size on disk in bytes, p50 latency in ms, compression_real)."""
    rng = random.Random(0)
    rows = []
    for task, dataset in tasks:
        for budget in budgets:
            for method, family, top1, size, lat, real in methods:
                for seed in seeds:
                    r = {c: None for c in COLUMNS}
                    r.update(
                        run_id=f"{method}-{task}-{budget}-{seed}-{setting}", setting=setting, method=method, family=family, task=task,
                        dataset=dataset, budget=budget, seed=seed, config_hash="0" * 12, config_json="{}",
                        top1_acc_pct=top1 + rng.uniform(-0.2, 0.2), val_top1_acc_pct=top1 + 0.5, selected_epoch=3,
                        selection_rule="best val top-1", params_count=100_000, params_nonzero=int(size / 4),
                        bits_per_weight_effective=32.0, size_bytes_theoretical=int(size), size_bytes_disk=int(size),
                        size_bytes_gzip=int(size * 0.9), macs=int(size * 2), flops=int(size * 4),
                        macs_ratio_vs_baseline=1.0, cpu_threads=2,
                        latency_ms_p50_cpu_b1=lat * rng.uniform(0.97, 1.03), latency_ms_p90_cpu_b1=lat * 1.2,
                        latency_ms_mean_cpu_b1=lat * 1.05, latency_ms_std_cpu_b1=lat * 0.05,
                        latency_ms_p50_cpu_b64=lat * 20, latency_ms_p90_cpu_b64=lat * 22,
                        latency_ms_mean_cpu_b64=lat * 21, latency_ms_std_cpu_b64=lat,
                        baseline_latency_ms_p50_cpu_b1=1.0, baseline_latency_ms_p50_cpu_b64=20.0,
                        speedup_cpu_b1=1.0 / lat, speedup_cpu_b64=1.0 / lat, compression_real=real,
                        latency_samples_cpu_b1=50, latency_samples_cpu_b64=30,
                        latency_path_cpu_b1="fp32 bn-folded contiguous jit-frozen",
                        latency_path_cpu_b64="fp32 bn-folded channels_last jit-frozen",
                        baseline_latency_path_cpu_b1="fp32 bn-folded contiguous jit-frozen",
                        baseline_latency_path_cpu_b64="fp32 bn-folded channels_last jit-frozen", allocator="jemalloc",
                        compression_note="" if real else "masks only <b>| not physical</b>",
                        quant_engine="", train_gflops_per_s=10.0, matmul_gflops_per_s=50.0,
                        git_commit="abc1234", torch_version="2.14.1", cpu_model="Test CPU", device="cpu",
                        timestamp_utc="2026-01-01T00:00:00Z", wall_time_s=12.5, peak_mem_bytes=10_000_000,
                        latency_ms_p50_cuda_b1=None, latency_ms_p50_cuda_b64=None, gpu_name="",
                        schema_version=1, extra_json="{}",
                    )
                    rows.append(r)
    return pd.DataFrame(rows, columns=list(COLUMNS))


FIXTURE_METHODS = [
    # baseline 90 %; hinton +0.9 pp (claim 0.7 +- 0.5: reproduced), 2.5x smaller on disk (claim 3 +- 0.2: same direction)
    ("baseline", "reference", 90.0, 400_000, 1.0, True),
    ("student", "reference", 88.5, 160_000, 0.5, True),
    ("hinton2015distilling", "distillation", 90.9, 160_000, 0.5, True),
    ("zhu2017prune", "pruning", 89.2, 400_000, 1.0, False),
    (HOSTILE_METHOD, "distillation", 80.0, 100_000, 0.3, False),
]


def write_snapshot(folder: Path, runs: pd.DataFrame, env: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    runs.to_csv(folder / "runs.csv", index=False)
    runs.to_json(folder / "runs.json", orient="records")
    (folder / "env.json").write_text(json.dumps(env if env is not None else {
        "cpu_model": "Test CPU <b>x</b>", "cpu_threads": 2, "torch_version": "2.14.1",
        "git_commit": "abc1234", "date_utc": "2026-01-01", "wall_time_s": 123.4}))
    return folder


def build_site(out: Path, catalog_dir: Path | None, results_dir: Path | None, yml: Path = MKDOCS_YML) -> Path:
    """A strict in-process ``mkdocs build`` with the given inputs (None: the repository's defaults)."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    saved = {k: os.environ.get(k) for k in (CATALOG_ENV, RESULTS_ENV)}
    try:
        for k, v in ((CATALOG_ENV, catalog_dir), (RESULTS_ENV, results_dir)):
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)
        cfg = load_config(str(yml), site_dir=str(out), strict=True)
        build(cfg)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return out


def setting_runs() -> pd.DataFrame:
    """Rows of hinton2015distilling's paper setting (tests/fixtures/site/catalog/settings/) on the paper's MNIST."""
    return fake_runs(FIXTURE_METHODS[:3], tasks=(("mnist", "mnist"),), budgets=("cpu",),
                     setting="hinton2015distilling/cpu")


LEVELS = [  # zhu2017prune at two more sparsities (a curve) and a same-level control of hinton2015distilling
    ("zhu2017prune:sparsity50", "pruning", 89.9, 400_000, 1.0, False),
    ("zhu2017prune:sparsity95", "pruning", 86.1, 400_000, 1.0, False),
    ("hinton2015distilling:random-init", "distillation", 88.9, 160_000, 0.5, True),
]
THEORETICAL = {"zhu2017prune": 80_000, "zhu2017prune:sparsity50": 200_000, "zhu2017prune:sparsity95": 20_000}


def level_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus control rows: zhu2017prune's other sparsities (theoretical size from the nonzero
    weights; masks keep the disk size) and a control of hinton2015distilling at its own level."""
    levels = fake_runs(LEVELS)
    levels["control_kind"] = levels["method"].str.partition(":")[2]
    levels["control_of"] = [f"{m.partition(':')[0]}-fmnist-default-{s}-" for m, s in zip(levels["method"], levels["seed"])]
    out = pd.concat([runs, levels], ignore_index=True)
    for method, size in THEORETICAL.items():
        out.loc[out["method"] == method, "size_bytes_theoretical"] = size
    return out


def build_fixture_site(root: Path, with_snapshot: bool = True) -> Path:
    runs = pd.concat([level_runs(fake_runs(FIXTURE_METHODS)), setting_runs()], ignore_index=True)
    results = write_snapshot(root / "snapshot", runs) if with_snapshot else root / "no-snapshot"
    return build_site(root / "site", FIXTURE_CATALOG, results)


class _Page(HTMLParser):
    """Collects elements, script bodies and the text of the first <h1> of an HTML page."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self.h1 = ""
        self._in: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag in ("script", "h1"):
            self._in.append(tag)
            if tag == "script":
                self.scripts.append("")

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data):
        if "script" in self._in:
            self.scripts[-1] += data
        elif "h1" in self._in and not self.h1.endswith("\x00"):
            self.h1 += data


def _page(site: Path, rel: str) -> str:
    return (site / rel / "index.html").read_text(encoding="utf-8")


def _badges(text: str) -> list[str]:
    return re.findall(r'<span class="mc-status mc-status--[a-z-]+">([a-z ]+)</span>', text)


@pytest.fixture(scope="module")
def fixture_site(tmp_path_factory) -> Path:
    _loader_or_skip()
    return build_fixture_site(tmp_path_factory.mktemp("fixture-site"))


@pytest.fixture(scope="module")
def bare_site(tmp_path_factory) -> Path:
    _loader_or_skip()
    return build_fixture_site(tmp_path_factory.mktemp("bare-site"), with_snapshot=False)


# --------------------------------------------------------------------------- pure parts
@pytest.mark.parametrize("text", [
    '<script>alert("x")</script>', "*a* _b_ `c` [d](e) | f", "# heading {: .cls } <!-- c -->", "1986. list?",
    "a & b &amp; c", "- item", "> quote", "\\*escaped\\*", "![img](x.png)", "~~del~~ ^^ins^^ ==mark==",
])
def test_md_escape_renders_as_the_literal_text(text):
    import markdown

    rendered = markdown.markdown(escape.md(text), extensions=["tables", "attr_list", "md_in_html", "admonition"])
    assert rendered.startswith("<p>") and rendered.endswith("</p>")
    inner = rendered[3:-4]
    assert "<" not in inner.replace("&lt;", "")   # no element of any kind
    assert html.unescape(inner) == text


def test_external_links_only_http():
    assert escape.external("x", "javascript:alert(1)") == "x"
    assert escape.external("x", "https://e.org/a b)") == "[x](https://e.org/a%20b%29)"
    assert escape.tag("<b>bold</b>") == "bboldb"


@pytest.mark.parametrize("ours, expected, tol, measure, status", [
    (0.9, 0.7, 0.5, "acc_delta_pp", cl.REPRODUCED),
    (-0.1, -0.5, 0.2, "acc_delta_pp", cl.SAME_DIRECTION),
    (0.3, -0.5, 0.2, "acc_delta_pp", cl.NOT_REPRODUCED),
    (2.5, 3.0, 0.2, "size_ratio_disk", cl.SAME_DIRECTION),
    (0.8, 3.0, 0.2, "speedup_cpu_b1", cl.NOT_REPRODUCED),
    (None, 3.0, 0.2, "macs_ratio", cl.NOT_YET_RUN),
])
def test_claim_status(ours, expected, tol, measure, status):
    assert cl.status_of(ours, expected, tol, measure) == status


def test_claim_measures_from_aggregated_rows():
    """A verdict comes from the paper-setting rows only; the shared task gives a figure, never a verdict."""
    from mcbench.catalog.model import Claim, Compare
    from mcbench.catalog.settings import parse_setting
    from mcbench.benchmarks.leaderboard import aggregate

    setting = parse_setting(FIXTURE_CATALOG / "settings" / "hinton2015distilling.yaml")   # claims [0, 1]
    shared_runs = fake_runs(FIXTURE_METHODS, tasks=(("fmnist", "fashion-mnist"), ("cifar", "cifar-10")),
                            budgets=("default", "tiny"))
    agg = aggregate(pd.concat([shared_runs, setting_runs()], ignore_index=True))
    claim = Claim("m", 1.0, "x", "d", "m", "b", "w", compare=Compare("size_ratio_disk", 2.5, 0.01, tolerance_why="test"))
    v = cl.judge(claim, "hinton2015distilling", agg, index=1, setting=setting)
    assert (v.setting.task, v.setting.dataset, v.setting.budget, v.setting.n_seeds) == ("mnist", "mnist", "cpu", 3)
    assert v.status == cl.REPRODUCED and v.ours == pytest.approx(2.5)
    acc = Claim("m", 1.0, "x", "MNIST", "m", "b", "w", compare=Compare("acc_delta_pp", 0.9, 0.3, tolerance_why="test"))
    assert cl.judge(acc, "hinton2015distilling", agg, index=0, setting=setting).status == cl.REPRODUCED
    # a claim the setting does not list, or no setting at all: no verdict, and the reason says why
    for v in (cl.judge(acc, "hinton2015distilling", agg, index=2, setting=setting),
              cl.judge(acc, "hinton2015distilling", agg)):
        assert v.status == cl.NOT_COMPARABLE and "no paper setting" in v.reason
    # the shared task: our figure, for comparing methods, never a verdict
    sh = cl.shared(acc, "hinton2015distilling", agg)
    assert sh.status == cl.NOT_COMPARABLE and sh.ours == pytest.approx(0.9, abs=0.25)
    assert (sh.setting.task, sh.setting.budget) == ("fmnist", "default") and "not the paper's setting" in sh.reason
    assert cl.judge(claim, "nobody2020nothing", agg, index=0, setting=setting).status == cl.NOT_YET_RUN
    assert cl.judge(Claim("m", 1.0, "x", "d", "m", "b", "w"), "hinton2015distilling", agg).status == cl.NOT_COMPARABLE
    # against the student trained alone (88.5 %) instead of the baseline (90 %): +2.4 pp, 1x on disk
    vs_student = cl.judge(Claim("m", 1.0, "x", "d", "m", "b", "w",
                                compare=Compare("acc_delta_pp", 2.4, 0.3, reference="student", tolerance_why="test")), "hinton2015distilling",
                          agg, index=0, setting=setting)
    assert vs_student.ours == pytest.approx(2.4, abs=0.25) and vs_student.status == cl.REPRODUCED


def test_a_substitute_dataset_gives_no_verdict_on_data_dependent_claims():
    from mcbench.catalog.model import Claim, Compare
    from mcbench.catalog.settings import parse_setting
    from mcbench.benchmarks.leaderboard import aggregate

    setting = parse_setting(FIXTURE_CATALOG / "settings" / "hinton2015distilling.yaml")
    runs = fake_runs(FIXTURE_METHODS[:3], tasks=(("fmnist", "fashion-mnist (substitute for mnist)"),), budgets=("cpu",),
                     setting="hinton2015distilling/cpu")
    agg = aggregate(runs)
    acc = Claim("test_errors", 74, "errors", "MNIST", "m", "b", "w", compare=Compare("acc_delta_pp", 0.9, 0.3, tolerance_why="test"))
    v = cl.judge(acc, "hinton2015distilling", agg, index=0, setting=setting)
    assert v.status == cl.NOT_COMPARABLE and v.ours == pytest.approx(0.9, abs=0.25)
    assert v.reason == ("the paper's MNIST result is compared with our fashion-mnist substitute: different data, "
                        "no verdict")
    size = Claim("m", 3.0, "x", "MNIST", "m", "b", "w", compare=Compare("size_ratio_disk", 2.5, 0.01, tolerance_why="test"))
    sv = cl.judge(size, "hinton2015distilling", agg, index=1, setting=setting)   # fixed by the architectures
    assert sv.status == cl.REPRODUCED and "not by the data" in sv.reason


# --------------------------------------------------------------------------- builds
def test_real_catalog_builds_strict_through_the_cli(tmp_path):
    """`mcbench site build` (strict) on the repository's catalog and whatever snapshot is committed."""
    _loader_or_skip()
    from mcbench.catalog import load_catalog

    cat = load_catalog()
    out = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env.pop(CATALOG_ENV, None)
    env.pop(RESULTS_ENV, None)
    proc = subprocess.run([sys.executable, "-m", "mcbench.site.cli", "build", "--out", str(out)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for p in cat.papers.values():
        assert (out / "catalog" / p.family / p.key / "index.html").is_file(), p.key
    assert (out / "leaderboard" / "index.html").is_file() and (out / "methodology" / "index.html").is_file()
    assert (out / "search" / "search_index.json").is_file()
    assert not list((REPO_ROOT / "site" / "docs").glob("catalog")), "generated pages must not land in site/docs"


def test_paper_page_shows_claims_with_statuses(fixture_site):
    page = _page(fixture_site, "catalog/distillation/hinton2015distilling")
    assert _badges(page) == ["reproduced", "same direction", "not comparable"]
    assert "Geoffrey Hinton, Oriol Vinyals, Jeff Dean" in page
    assert 'href="https://arxiv.org/abs/1503.02531"' in page
    text = html.unescape(re.sub(r"<[^>]+>", "", page))   # visible text (code blocks are split into spans)
    assert "methods/distillation/hinton2015distilling.py" in text and "mcbench run --methods hinton2015distilling" in text
    assert "@misc{hinton2015distilling," in text and 'class="highlight"' in page


def test_leaderboard_and_methodology_pages(fixture_site):
    lb = _page(fixture_site, "leaderboard/fmnist")
    assert "90.94 ± 0.13" in lb and "simulated" in lb and "real" in lb
    assert 'href="../../catalog/distillation/hinton2015distilling/"' in lb
    img = fixture_site / "leaderboard" / "img"
    stems = ["fmnist-default-fashion-mnist-" + k for k in ("compression", "latency", "latency-b64", "size")]
    assert sorted(p.name for p in img.iterdir()) == sorted(f"{s}.{e}" for s in stems for e in ("csv", "svg"))
    for stem in stems:   # each plot: an SVG (text as text, following the page colour) and its data as CSV
        svg = (img / f"{stem}.svg").read_text()
        assert svg.startswith("<svg") and "<text" in svg and "currentColor" in svg
        data = pd.read_csv(img / f"{stem}.csv")
        assert set(data["key"]) >= {"baseline", "hinton2015distilling"} and data["x"].gt(0).all()
        assert f'id="plot-{stem}"' in lb and f'href="img/{stem}.csv"' in lb
    meth = _page(fixture_site, "methodology")
    assert "Test CPU &#60;b&#62;x&#60;/b&#62;" in meth and "<b>x</b>" not in meth   # env.json rendered, escaped
    assert "abc1234" in meth and "5,000 train images held out for validation" in meth
    tags = _page(fixture_site, "tags")
    assert "logit-matching" in tags and "soft-targets" in tags


def test_missing_snapshot_builds_with_not_yet_run(bare_site):
    page = _page(bare_site, "catalog/distillation/hinton2015distilling")
    assert _badges(page) == ["not yet run", "not yet run", "not comparable"]
    assert "Not yet run" in _page(bare_site, "leaderboard")
    assert "Not yet run" in _page(bare_site, "methodology")
    assert not (bare_site / "leaderboard" / "fmnist").exists()


def test_hostile_title_and_summary_render_as_text(fixture_site):
    """`<script>` in a fixture entry's title, summary, claims, tags and a result row's method name:
    no script element carries it, no element gains an event handler, and the text shows escaped."""
    hostile = _Page(_page(fixture_site, f"catalog/distillation/{HOSTILE_KEY}"))
    assert hostile.h1.startswith('<script>alert("pwned-title")</script> *Bold* | pipe _under_ `tick` [link]')
    raw = _page(fixture_site, f"catalog/distillation/{HOSTILE_KEY}")
    assert '<script>alert("pwned-summary")</script> <img src=x onerror=' in html.unescape(raw)
    assert "<script>alert" not in raw and "<img src=x" not in raw
    for path in fixture_site.rglob("*.html"):
        page = _Page(path.read_text(encoding="utf-8"))
        assert not [s for s in page.scripts if "pwned" in s], path
        for tag, attrs in page.elements:
            assert not [a for a in attrs if a.startswith("on")], (path, tag, attrs)
            assert not (tag == "img" and attrs.get("src") == "x"), path
            assert tag not in ("b", "i"), (path, tag)   # only data ever contained <b>/<i>
            if tag == "a" and "href" in attrs:
                assert not attrs["href"].lower().startswith("javascript:"), path


def test_broken_link_fails_the_strict_build(tmp_path):
    from mkdocs.exceptions import Abort

    _loader_or_skip()
    site = tmp_path / "site"
    shutil.copytree(REPO_ROOT / "site", site, ignore=shutil.ignore_patterns("site", "__pycache__"))
    with open(site / "docs" / "index.md", "a", encoding="utf-8") as f:
        f.write("\n[a broken link](no-such-page.md)\n")
    with pytest.raises(Abort):
        build_site(tmp_path / "out", FIXTURE_CATALOG, tmp_path / "no-snapshot", yml=site / "mkdocs.yml")


def test_generate_is_pure_and_writes_a_tree(tmp_path):
    _loader_or_skip()
    from mcbench.catalog import load_catalog
    from mcbench.site.pages import generate, write_tree

    src = generate(load_catalog(FIXTURE_CATALOG), None, None, {})
    assert {"catalog/index.md", "tags.md", "leaderboard/index.md",
            f"catalog/distillation/{HOSTILE_KEY}.md"} <= set(src.files)
    assert src.nav_leaderboard == ["leaderboard/index.md"]
    written = write_tree(src, tmp_path)
    assert all(p.is_file() for p in written)
    text = (tmp_path / "catalog" / "distillation" / f"{HOSTILE_KEY}.md").read_text()
    before_bibtex, bibtex = text.split("## BibTeX")
    assert "<script>" not in before_bibtex and "pwned-summary" in html.unescape(before_bibtex)
    assert bibtex.startswith("\n\n```bibtex\n@misc{evil2020script,")   # BibTeX verbatim, inside a code fence


def test_extended_tier_is_named_with_its_reason_on_the_paper_and_leaderboard_pages():
    _loader_or_skip()
    import dataclasses

    from mcbench.catalog import load_catalog
    from mcbench.site.pages import generate

    cat = load_catalog(FIXTURE_CATALOG)
    key = next(k for k, p in cat.papers.items() if p.status == "implemented")
    reason = "trains <40> children per seed & more"
    cat.papers[key] = dataclasses.replace(cat.papers[key], leaderboard_tier="extended", tier_reason=reason)
    files = generate(cat, None, None, {}).files
    paper = next(v for k, v in files.items() if k.endswith(f"/{key}.md"))
    assert "Leaderboard tier:** extended" in paper and "--tier all" in paper
    board = files["leaderboard/index.md"]
    assert "## Extended tier" in board and key in board and "<40>" not in board   # escaped, not raw HTML
    for other, p in cat.papers.items():
        if other != key:
            page = next(v for k, v in files.items() if k.endswith(f"/{other}.md"))
            assert ("Leaderboard tier:** main" in page) == (p.status == "implemented"), other


def test_a_retrieval_row_shows_recall_at_1_where_top1_is_undefined():
    _loader_or_skip()
    from mcbench.catalog import load_catalog
    from mcbench.site.pages import generate

    cat = load_catalog(FIXTURE_CATALOG)
    runs = fake_runs([("baseline", "reference", 90.0, 400_000, 1.0, True),
                      ("hinton2015distilling", "distillation", 90.9, 160_000, 0.5, True)],
                     tasks=(("fmnist-retrieval", "fashion-mnist retrieval"),))
    runs["recall_at_1_pct"] = [61.0, 62.0, 63.0] * 2
    runs["top1_acc_pct"] = float("nan")                   # no classifier over the held-out classes
    page = next(v for k, v in generate(cat, runs, None, {}).files.items() if k.endswith("/hinton2015distilling.md"))
    results = page.split("## Results")[1].split("##")[0]
    assert "R@1 62.00 ± 1.00" in results and "nan" not in results.lower()


def test_paper_configurations_show_our_counts_and_latency_from_the_snapshot(tmp_path):
    """Ours and Δ come from complexity.json (the site builds no network); a missing entry says so."""
    _loader_or_skip()
    import dataclasses

    from mcbench.catalog import load_catalog
    from mcbench.catalog.model import Complexity
    from mcbench.site.pages import generate
    from mcbench.site.sources import load_complexity

    cat = load_catalog(FIXTURE_CATALOG)
    key = next(k for k, p in cat.papers.items() if p.status == "implemented")
    cfgs = [Complexity("Net <b>1.0</b>", "Table 1", {}, (3, 224, 224), 1000, 4.2e6, 569e6),
            Complexity("Net 0.5", "Table 2", {}, (3, 224, 224), 1000, None, 149e6)]
    cat.papers[key] = dataclasses.replace(cat.papers[key], complexity=cfgs)
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "complexity.json").write_text(json.dumps({
        "schema": 1, "git_commit": "abc123def456",
        "latency": {"cpu_model": "Test <CPU>", "cpu_threads": 2, "runs": 30, "weights": "freshly initialised"},
        "configs": [{"key": key, "name": "Net <b>1.0</b>", "params_count": 4_231_976, "macs": 568_740_000,
                     "latency_ms_p50_cpu_b1": 12.34, "latency_path_cpu_b1": "fp32 bn-folded channels_last frozen"}]}))
    measured = load_complexity(snap)
    page = next(v for k, v in generate(cat, None, None, {}, complexity=measured).files.items()
                if k.endswith(f"/{key}.md"))
    section = page.split("## Paper configurations")[1].split("\n## ")[0]
    first = next(line for line in section.splitlines() if "Table 1" in line)
    assert "4.23M" in first and "+0.8%" in first and "569M" in first and "-0.0%" in first and "12.3" in first
    second = next(line for line in section.splitlines() if "Table 2" in line)
    assert second.count(" — ") >= 3 and "12.3" not in second          # not measured: dashes, not zeros
    assert "<b>" not in section and "<CPU>" not in section and "abc123def456" in section
    # no complexity.json: the paper's figures stay, ours is said to be missing
    bare = next(v for k, v in generate(cat, None, None, {}).files.items() if k.endswith(f"/{key}.md"))
    assert "*Ours* is empty" in bare and "569M" in bare
