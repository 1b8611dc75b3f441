"""The controlled tag vocabulary (catalog/tags.yaml): a few dozen tags, each used by two or more papers; the
loader rejects a tag outside it."""
from __future__ import annotations

import shutil
from pathlib import Path

from mcbench.catalog import load_catalog, load_with_problems
from mcbench.catalog.loader import DEFAULT_ROOT, load_vocabulary


def test_vocabulary_is_a_few_dozen_tags_each_used_twice() -> None:
    vocabulary = load_vocabulary(DEFAULT_ROOT)
    assert vocabulary is not None and 20 <= len(vocabulary) <= 60, len(vocabulary or {})
    assert all(desc.strip() for desc in vocabulary.values())
    used = load_catalog().tags()
    assert set(used) <= set(vocabulary)
    rare = {t: len(used.get(t, [])) for t in vocabulary if len(used.get(t, [])) < 2}
    assert not rare, f"tags used by fewer than two papers: {rare}"


def test_every_paper_is_tagged() -> None:
    assert all(p.tags for p in load_catalog().papers.values())


def test_loader_rejects_a_tag_outside_the_vocabulary(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    (root / "papers").mkdir(parents=True)
    shutil.copy(DEFAULT_ROOT / "tags.yaml", root / "tags.yaml")
    for ext in ("bib", "yaml"):
        shutil.copy(DEFAULT_ROOT / "papers" / f"zhu2017prune.{ext}", root / "papers")
    assert load_with_problems(root)[1] == []
    record = root / "papers" / "zhu2017prune.yaml"
    text = record.read_text(encoding="utf-8")
    record.write_text(text.replace("tags: [", "tags: [magnitude-prunning, ", 1), encoding="utf-8")
    problems = load_with_problems(root)[1]
    assert any(": tags: not in the controlled vocabulary (catalog/tags.yaml): 'magnitude-prunning' "
               "(did you mean 'magnitude-pruning'?)" in p for p in problems), problems
