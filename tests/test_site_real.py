"""The site built from the real catalog and the committed snapshot, in a child process:

- the build never imports torch (the registry is read from the method files' source);
- no page shows a reading list's storage file name or raw Markdown link syntax, and titles show no raw TeX;
- downloads: the results CSV opens in pandas, the combined .bib parses with bibtexparser and holds every entry;
- the registry read from source agrees with the imported registry (fast test).
"""
from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mcbench.site.sources import REPO_ROOT

STORAGE_NAME = re.compile(r"\b\d{3}_[0-9a-f]{16}\.txt\b")
RAW_MD_LINK = re.compile(r"\[[^\]\n]{1,200}\]\((?:https?://|\.\.?/)[^)\s]*\)")
BUILD = """
import json, sys
from pathlib import Path
from mcbench.site.cli import build_into, _env
build_into(Path(sys.argv[1]), _env(None, None))
print(json.dumps({"torch": "torch" in sys.modules, "mods": sorted(m for m in sys.modules if m.startswith("mcbench"))}))
"""


@pytest.fixture(scope="module")
def real_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("real-site") / "site"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCBENCH_")}
    env["NO_MKDOCS_2_WARNING"] = "1"
    proc = subprocess.run([sys.executable, "-c", BUILD, str(out)], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def _visible_text(page: str) -> str:
    """The page's text outside <pre>/<code> blocks (BibTeX and commands are shown verbatim on purpose)."""
    page = re.sub(r"<(pre|code|script|style)\b.*?</\1>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


@pytest.mark.slow
def test_build_does_not_import_torch(real_site):
    _, report = real_site
    assert report["torch"] is False, "the site build imported torch"


@pytest.mark.slow
def test_no_storage_names_raw_links_or_tex_on_any_page(real_site):
    out, _ = real_site
    pages = sorted(out.rglob("*.html"))
    assert len(pages) > 60
    for path in pages:
        raw = path.read_text(encoding="utf-8")
        text = _visible_text(raw)
        assert not STORAGE_NAME.search(raw), (path, STORAGE_NAME.search(raw).group(0))
        assert not RAW_MD_LINK.search(text), (path, RAW_MD_LINK.search(text).group(0))
        title = re.search(r"<title>(.*?)</title>", raw, flags=re.S).group(1)
        assert "$" not in html.unescape(title), (path, title)
    louizos = (out / "catalog" / "pruning" / "louizos2017learning" / "index.html").read_text(encoding="utf-8")
    assert "L₀ Regularization" in html.unescape(louizos)
    # a reading list shows its title and its links as links
    frankle = html.unescape((out / "catalog" / "pruning" / "frankle2018lottery" / "index.html").read_text(encoding="utf-8"))
    assert "Model Compression (research notes page)" in frankle
    assert 'href="https://www.inference.vc/the-lottery-ticket-hypothesis/"' in frankle


@pytest.mark.slow
def test_downloads_open_in_pandas_and_bibtexparser(real_site):
    import bibtexparser

    from mcbench.catalog import load_catalog

    out, _ = real_site
    runs = pd.read_csv(out / "downloads" / "results" / "runs.csv")
    assert {"method", "task", "top1_acc_pct"} <= set(runs.columns) and len(runs) > 0
    assert json.loads((out / "downloads" / "results" / "runs.json").read_text())
    lib = bibtexparser.parse_string((out / "downloads" / "mcbench.bib").read_text(encoding="utf-8"))
    cat = load_catalog()
    assert not lib.failed_blocks and sorted(e.key for e in lib.entries) == sorted(cat.papers)
    years = {e.key: int(e.fields_dict["year"].value) for e in lib.entries}
    assert years["jacob2017quantization"] == 2018 and years["han2015deep"] == 2016
    one = bibtexparser.parse_string((out / "downloads" / "bib" / "zhu2017prune.bib").read_text(encoding="utf-8"))
    assert [e.key for e in one.entries] == ["zhu2017prune"]


def test_registry_from_source_matches_the_imported_registry():
    from mcbench.catalog import load_catalog
    from mcbench.methods.registry import REGISTRY
    from mcbench.site.sources import implementations

    keys = list(load_catalog().papers) + ["nonexistent2020key"]
    imported = {k: REGISTRY.get(k).source_file for k in keys if k in REGISTRY}
    assert implementations(keys) == imported and imported


def test_arch_names_read_from_source_match_the_registry():
    from mcbench.benchmarks.archs import ARCHS
    from mcbench.benchmarks.archspec import known_arch_names

    assert known_arch_names() == set(ARCHS) and ARCHS
