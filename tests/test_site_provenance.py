"""Provenance on the built site: the sitemap filled from ``site_url`` (default and configured), source links
pinned to the snapshot's commit under a configured ``repo_url``, a visible warning for a snapshot from a
modified tree, and footer aria-labels escaped exactly once."""
from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from mcbench.catalog import load_catalog
from mcbench.site import pages
from mcbench.site.cli import REPO_URL_ENV, SITE_URL_ENV

from test_site import FIXTURE_CATALOG, FIXTURE_METHODS, HOSTILE_KEY, build_site, fake_runs, write_snapshot

REPO = "https://git.example.org/team/mcbench"
SITE = "https://example.org/mcbench/"
DIRTY_ENV = {"git_commit": "abc1234def56-dirty", "cpu_model": "Test CPU", "rows_from_dirty_tree": 0}


def _build(root: Path, env: dict, site_url: str | None, repo_url: str | None) -> Path:
    saved = {k: os.environ.get(k) for k in (SITE_URL_ENV, REPO_URL_ENV)}
    try:
        for k, v in ((SITE_URL_ENV, site_url), (REPO_URL_ENV, repo_url)):
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        snapshot = write_snapshot(root / "snapshot", fake_runs(FIXTURE_METHODS), env)
        return build_site(root / "site", FIXTURE_CATALOG, snapshot)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def configured(tmp_path_factory) -> Path:
    """Built with a site URL, a repository URL and a snapshot exported from a dirty tree."""
    return _build(tmp_path_factory.mktemp("configured"), DIRTY_ENV, SITE, REPO)


@pytest.fixture(scope="module")
def default(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("default"), {"git_commit": "abc1234def56"}, None, None)


def _locs(site: Path) -> list[str]:
    return re.findall(r"<loc>([^<]*)</loc>", (site / "sitemap.xml").read_text())


def test_sitemap_is_filled_by_default_and_follows_site_url(default, configured):
    assert _locs(default) and all(u.startswith("http://127.0.0.1:8000/") for u in _locs(default))
    locs = _locs(configured)
    assert f"{SITE}catalog/distillation/hinton2015distilling/" in locs and all(u.startswith(SITE) for u in locs)


def test_source_links_are_pinned_to_the_snapshot_commit(default, configured):
    page = (configured / "catalog" / "distillation" / "hinton2015distilling" / "index.html").read_text()
    assert f'href="{REPO}/blob/abc1234def56/methods/distillation/hinton2015distilling.py"' in page
    assert "/blob/abc1234def56-dirty/" not in page
    plain = (default / "catalog" / "distillation" / "hinton2015distilling" / "index.html").read_text()
    assert "<code>methods/distillation/hinton2015distilling.py</code>" in plain and "/blob/" not in plain


def test_a_dirty_snapshot_shows_a_warning_where_results_are_read(default, configured):
    for rel in ("leaderboard", "leaderboard/fmnist", "methodology", ""):
        text = (configured / rel / "index.html").read_text()
        assert "Snapshot from a modified tree" in text and "admonition warning" in text, rel
        assert "Snapshot from a modified tree" not in (default / rel / "index.html").read_text(), rel


def test_dirty_rows_alone_also_warn():
    runs = fake_runs(FIXTURE_METHODS)
    cat = load_catalog(FIXTURE_CATALOG)
    clean = pages.generate(cat, runs, {"git_commit": "abc1234"})
    assert "modified tree" not in clean.files["leaderboard/index.md"]
    runs.loc[runs["method"] == "student", "git_commit"] = "abc1234-dirty"
    dirty = pages.generate(cat, runs, {"git_commit": "abc1234"})
    assert "3 of its result rows were produced from a tree with uncommitted changes" in dirty.files["leaderboard/index.md"]


class _Labels(HTMLParser):
    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.labels: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and "md-footer__link" in (a.get("class") or ""):
            self.labels.append(a.get("aria-label") or "")


def test_footer_aria_labels_are_escaped_once(default):
    """The hostile paper's sidebar label (``2020 · <b>Evil</b> & "Co" <script>...``) reads as itself in its
    neighbours' footer links: escaped once (not ``&amp;amp;``), never markup."""
    labels, texts = [], {}
    for page in default.rglob("index.html"):
        text = texts[page] = page.read_text()
        labels += _Labels(text).labels
        assert "&amp;amp;" not in text and "&amp;lt;" not in text, page     # nothing escaped twice
        assert "<script>alert('pwned-nav')" not in text, page               # nor as markup
    hostile = [lab for lab in labels if "pwned-nav" in lab]
    assert hostile, "no footer link to the hostile page"
    assert all(lab.endswith("2020 · <b>Evil</b> & \"Co\" <script>alert('pwned-nav')</script>") for lab in hostile), hostile
    assert all(lab.split(": ", 1)[0] in ("Previous", "Next") for lab in labels)
