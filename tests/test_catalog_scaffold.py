"""``mcbench new-method``: scaffolds into a tmp copy of catalog/ + methods/ (never the real tree).

Generated modules are imported in a subprocess so the global REGISTRY of this test session stays clean.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcbench.catalog import load_catalog, load_with_problems
from mcbench.catalog.scaffold import ScaffoldError, new_method
from mcbench.catalog.templates import FAMILY_BASES

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "catalog"
KEYS = {family: f"lee2019{family}" for family in FAMILY_BASES}


def make_root(tmp_path: Path) -> Path:
    """A repository skeleton: the valid fixture catalog and a copy of the real methods/ package."""
    root = tmp_path / "repo"
    shutil.copytree(FIXTURES / "valid", root / "catalog")
    shutil.copytree(REPO / "methods", root / "methods", ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One root with a scaffold of every family."""
    root = make_root(tmp_path_factory.mktemp("scaffold"))
    for family, key in KEYS.items():
        new_method(key, family, root=root)
    return root


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python in ``root`` with ``mcbench.methods`` resolving to the scaffolded ``root/methods``.

    ``_ns/mcbench`` is a namespace portion found before the installed package's finder, so
    ``mcbench.methods`` comes from the copy and everything else (``mcbench.benchmarks``) from the install.
    """
    ns = root / "_ns" / "mcbench"
    if not ns.exists():
        ns.mkdir(parents=True)
        (ns / "methods").symlink_to(root / "methods", target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(root / "_ns"), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_writes_the_three_steps(scaffolded: Path) -> None:
    for family, key in KEYS.items():
        assert (scaffolded / "methods" / family / f"{key}.py").is_file()
        assert (scaffolded / "catalog" / "papers" / f"{key}.yaml").is_file()
        assert (scaffolded / "tests" / "methods" / f"test_{key}.py").is_file()
        assert (scaffolded / "catalog" / "papers" / f"{key}.bib").read_text().startswith(f"@misc{{{key},")
        assert f"family: {family}" in (scaffolded / "catalog" / "papers" / f"{key}.yaml").read_text()
    assert not (scaffolded / "catalog" / "bib").exists()  # nothing shared is edited


def test_acceleration_family_has_a_template(scaffolded: Path) -> None:
    text = (scaffolded / "methods" / "acceleration" / "lee2019acceleration.py").read_text()
    assert '@register(family="acceleration")\nclass lee2019acceleration(AccelerationMethod):' in text
    assert "def transform(self, model: nn.Module, ctx: MethodContext) -> nn.Module:" in text
    assert "from mcbench.methods.protocols import AccelerationMethod, MethodContext" in text


def test_method_file_follows_the_house_style(scaffolded: Path) -> None:
    text = (scaffolded / "methods" / "pruning" / "lee2019pruning.py").read_text()
    assert '@register(family="pruning")\nclass lee2019pruning(PruningMethod):' in text
    assert text.startswith('"""TODO: exact title of the paper.\n')
    for line in ("Key: lee2019pruning.", "Implements:", "Real:", "Simulated:", "Deviations:"):
        assert line in text
    assert text.count("raise NotImplementedError(") == 3 and "fill in" in text


def test_placeholders_are_the_only_catalog_problems(scaffolded: Path) -> None:
    _, problems = load_with_problems(scaffolded / "catalog")
    assert problems, "the scaffolded entries must not validate until their TODOs are filled in"
    for text in problems:
        assert "placeholder" in text and "lee2019" in text, text
    fields = {re.match(r"^.*?:\d+: ([^:]+):", p).group(1) for p in problems}
    assert fields == {"title", "author", "eprint", "summary"}


def test_filled_in_scaffold_validates(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    new_method("lee2019filled", "compact", root=root)
    bib, record = root / "catalog" / "papers" / "lee2019filled.bib", root / "catalog" / "papers" / "lee2019filled.yaml"
    bib.write_text(re.sub(r"\{TODO[^}]*\}", "{Filled In}", bib.read_text()).replace("{Filled In},\n  year",
                                                                                      "{Lee, Ann},\n  year"))
    record.write_text(record.read_text().replace("TODO:", "Done:"))
    paper = load_catalog(root / "catalog").papers["lee2019filled"]
    assert (paper.status, paper.family, paper.year, paper.claims) == ("implemented", "compact", 2019, [])


def test_generated_modules_import_and_register(scaffolded: Path) -> None:
    code = ("from mcbench.methods.registry import REGISTRY\n"
            f"for family, key in {KEYS!r}.items():\n"
            "    e = REGISTRY.get(key)\n"
            "    assert (e.family, e.cls.__name__, e.source_file) == (family, key, f'methods/{family}/{key}.py'), e\n"
            "    REGISTRY.create(key)\n"
            "print('ok')\n")
    result = run(scaffolded, "-c", code)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_generated_tests_fail_with_a_clear_message_until_filled(scaffolded: Path) -> None:
    result = run(scaffolded, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/methods")
    n = len(KEYS)
    assert f"{n} failed, {n} passed" in result.stdout, result.stdout[-3000:]
    assert "skipped" not in result.stdout
    assert "fill in" in result.stdout  # the NotImplementedError of each unfilled protocol method


@pytest.mark.parametrize("key, family, message", [
    ("Lee2019Bad", "pruning", "invalid key"),
    ("lee2019", "pruning", "invalid key"),
    ("lee2019x", "survey", "unknown family"),
    ("lee2019x", "fusion", "unknown family"),
    ("smith2015distilling", "distillation", "already exists"),
])
def test_refusals_are_one_line_and_write_nothing(tmp_path: Path, key: str, family: str, message: str) -> None:
    root = make_root(tmp_path)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(ScaffoldError, match=message) as info:
        new_method(key, family, root=root)
    assert "\n" not in str(info.value)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_refuses_a_key_scaffolded_before(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    new_method("lee2019twice", "pruning", root=root)
    with pytest.raises(ScaffoldError, match="already exists"):
        new_method("lee2019twice", "quantization", root=root)


def test_unfinished_scaffolds_are_left_out_of_the_default_sweep(scaffolded: Path) -> None:
    """Real `new-method` output: registered, but each is skipped by the default sweep with a warning naming it."""
    code = ("from mcbench.benchmarks.runner import default_methods\n"
            "from mcbench.methods.registry import REGISTRY\n"
            "warnings = []\n"
            "methods = default_methods(warnings.append)\n"
            f"keys = {sorted(KEYS.values())!r}\n"
            "assert all(k in REGISTRY for k in keys), REGISTRY.broken\n"
            "assert not set(keys) & set(methods), methods\n"
            "assert {'baseline', 'student', 'zhu2017prune', 'hinton2015distilling'} <= set(methods), methods\n"
            "for k in keys:\n"
            "    (w,) = [w for w in warnings if k in w]\n"
            "    assert 'left out of the default sweep' in w and 'unfinished scaffold' in w, w\n"
            "print('ok')\n")
    result = run(scaffolded, "-c", code)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
