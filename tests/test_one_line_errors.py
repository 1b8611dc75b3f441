"""Every failure of every command is one ``error:`` line on stderr and a non-zero exit; --debug adds the traceback.

In-process through typer's CliRunner: an exception that escaped the CLI would show up in
``result.exception`` (the tests require it to be a clean ``SystemExit``).
"""
from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcbench.benchmarks import runner
from mcbench.benchmarks.cli import app
from mcbench.methods.registry import REGISTRY, Registry, UnknownMethodError
from helpers import mcbench, rows

SMOKE = ["run", "--task", "digits", "--budget", "smoke", "--seeds", "1"]


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


def assert_one_line(result, *words: str, code: int | None = None) -> str:
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture
def no_training(monkeypatch):
    """Training anything fails the test (the failure under test must come first)."""
    def refuse(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(runner, "train", refuse)


# --------------------------------------------------------------------------- stores
def test_a_text_file_as_db(tmp_path, no_training):
    db = tmp_path / "notes.txt"
    db.write_text("not a database\n" * 20)
    before = db.read_bytes()
    assert_one_line(invoke(*SMOKE, "--methods", "baseline", "--db", str(db)), "not a database")
    assert_one_line(invoke("leaderboard", "--db", str(db), "--out", str(tmp_path / "lb")), "not a database")
    assert db.read_bytes() == before  # nothing written into it


def test_a_directory_as_db(tmp_path, no_training):
    d = tmp_path / "store"
    d.mkdir()
    assert_one_line(invoke(*SMOKE, "--methods", "baseline", "--db", str(d)))
    assert_one_line(invoke("leaderboard", "--db", str(d), "--out", str(tmp_path / "lb")))
    assert list(d.iterdir()) == []


def test_a_db_path_below_a_file(tmp_path, no_training):
    f = tmp_path / "plain"
    f.write_text("x")
    assert_one_line(invoke(*SMOKE, "--methods", "baseline", "--db", str(f / "r.sqlite")), "plain")


def test_leaderboard_on_a_store_of_another_shape(tmp_path):
    """A SQLite file with a ``results`` table of other columns: one line, whatever fails first inside."""
    db = tmp_path / "other.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE results (x INTEGER)")
        c.execute("INSERT INTO results VALUES (1)")
    assert_one_line(invoke("leaderboard", "--db", str(db), "--out", str(tmp_path / "lb")))


def test_leaderboard_internal_failure_is_one_line(tmp_path, monkeypatch):
    """Everything inside ``leaderboard`` (here: the aggregation) ends in one line."""
    from mcbench.benchmarks import leaderboard

    def boom(*a, **k):
        raise KeyError("top1_acc_pct")

    monkeypatch.setattr(leaderboard, "aggregate", boom)
    monkeypatch.setattr(leaderboard, "markdown_table", boom, raising=False)
    from mcbench.benchmarks.store import ResultStore

    db = tmp_path / "r.sqlite"
    ResultStore(db).close()
    line = assert_one_line(invoke("leaderboard", "--db", str(db), "--out", str(tmp_path / "lb")))
    assert "top1_acc_pct" in line or "no rows" in line or "empty" in line, line


# --------------------------------------------------------------------------- data
def _images(root: Path, layout: dict[str, int]) -> None:
    from PIL import Image

    for rel, n in layout.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / rel / f"{i}.png")


@pytest.mark.parametrize("case, words", [
    ("corrupt_image", ["cannot read image", "bad.png"]),
    ("no_class_folder", ["imagefolder", "class folder"]),
    ("no_images", ["imagefolder", "no valid file"]),
    ("other_classes", ["different class folders"]),
])
def test_bad_imagefolder(tmp_path, no_training, case, words):
    root = tmp_path / "imf"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir(parents=True)
    if case == "corrupt_image":
        _images(root, {"train/a": 3, "train/b": 3, "test/a": 2, "test/b": 2})
        (root / "train" / "a" / "bad.png").write_bytes(b"\x89PNG but not really")
    elif case == "no_images":
        (root / "train" / "a").mkdir()
        (root / "test" / "a").mkdir()
    elif case == "other_classes":
        _images(root, {"train/a": 3, "train/b": 3, "test/a": 2, "test/c": 2})
    db = tmp_path / "r.sqlite"
    r = invoke("run", "--task", "imagefolder", "--data-dir", str(root), "--budget", "smoke", "--seeds", "1",
               "--methods", "baseline", "--db", str(db), "--cache-dir", str(tmp_path / "ckpt"))
    line = assert_one_line(r, *words)
    assert "Found no valid file" in line or case != "no_images"
    assert rows(db) == []


# --------------------------------------------------------------------------- usage and unexpected errors
@pytest.mark.parametrize("args, words", [
    (["run", "--seeds", "0"], ["--seeds", "run --help"]),
    (["no-such-command"], ["No such command"]),
    (["--no-such-option", "env"], ["No such option"]),
    (["catalog", "show"], ["Missing argument"]),
])
def test_usage_errors_are_one_line_with_exit_2(args, words):
    assert_one_line(invoke(*args), *words, code=2)


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch):
    def boom(threads):
        raise RuntimeError("boom\nsecond line of a long message")

    monkeypatch.setattr(runner, "environment", boom)
    line = assert_one_line(invoke("env"), "RuntimeError: boom", "+1 more line", "--debug")
    assert "second line" not in line
    for debug in (["--debug", "env"], ["env"]):
        r = invoke(*debug, env={"MCBENCH_DEBUG": "1"} if debug == ["env"] else {})
        assert r.exit_code == 1 and isinstance(r.exception, SystemExit)
        assert "Traceback (most recent call last)" in r.stderr and "in boom" in r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("error: RuntimeError: boom")


def test_debug_in_a_real_process(tmp_path):
    """Outside CliRunner too: no traceback by default, the traceback with --debug; nothing stored either way."""
    args = ["run", "--task", "digits", "--budget", "smoke", "--methods", "zhu2017prune", "--config",
            '{"zhu2017prune": {"final_sparsity": 1.5}}', "--db", str(tmp_path / "r.sqlite")]
    p = mcbench(*args)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert [line for line in p.stderr.splitlines() if line.strip()] == [
        "error: zhu2017prune: config final_sparsity=1.5 (override) rejected: input should be less than 1 "
        "(rule: final_sparsity is float, >= 0.0, < 1.0)"]
    p = mcbench("--debug", *args)
    assert p.returncode == 1 and "Traceback (most recent call last)" in p.stderr and "ConfigError" in p.stderr
    assert not (tmp_path / "r.sqlite").exists()


# --------------------------------------------------------------------------- unfinished and broken methods
SCAFFOLD = '''\
"""TODO: exact title of the paper.

TODO: Surname ($year), arXiv:TODO. Key: {key}.
"""
from dataclasses import dataclass

import torch

from mcbench.methods.protocols import DistillationMethod
from mcbench.methods.registry import register


@register(family="distillation")
class {key}(DistillationMethod):
    @dataclass
    class Config:
        pass  # TODO

    def loss(self, student, targets, teacher):
        raise NotImplementedError("{key}.loss: fill in the paper's loss")
'''


def _import_method_file(path: Path, key: str) -> None:
    """Import ``path`` as module ``key`` (its @register adds ``key`` to the global REGISTRY)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)


def _forget(key: str) -> None:
    import sys

    REGISTRY._entries.pop(key, None)
    sys.modules.pop(key, None)


@pytest.fixture
def unfinished(tmp_path):
    """An unfinished `mcbench new-method` scaffold, imported and registered like a real method file."""
    key = "lee2019unfinished"
    (tmp_path / f"{key}.py").write_text(SCAFFOLD.format(key=key))
    _import_method_file(tmp_path / f"{key}.py", key)
    yield key
    _forget(key)


def test_unfinished_scaffold_is_left_out_of_the_default_sweep_with_a_warning(unfinished, monkeypatch, tmp_path):
    assert unfinished in REGISTRY and "unfinished scaffold" in REGISTRY.unusable()[unfinished]
    seen = {}

    def capture(cfg, **kw):
        seen["methods"] = cfg.methods
        return []

    monkeypatch.setattr(runner, "run_sweep", capture)
    r = invoke(*SMOKE, "--db", str(tmp_path / "r.sqlite"))
    assert r.exit_code == 0, r.output
    assert unfinished not in seen["methods"]
    others = set(REGISTRY.keys()) - {unfinished} - set(runner.extended_tier())   # the main tier's others still run
    assert others and others <= set(seen["methods"])
    warning = [line for line in r.stderr.splitlines() if unfinished in line]
    assert len(warning) == 1 and "left out of the default sweep" in warning[0] and "docstring" in warning[0]


def test_unfinished_scaffold_requested_explicitly_fails_in_one_line(unfinished, tmp_path, no_training):
    r = invoke(*SMOKE, "--methods", f"baseline,{unfinished}", "--db", str(tmp_path / "r.sqlite"))
    assert_one_line(r, f"method '{unfinished}' cannot run", "unfinished scaffold", "leave it out of --methods")
    assert not (tmp_path / "r.sqlite").exists()


def test_placeholder_raise_alone_marks_a_method_unfinished(tmp_path):
    key = "lee2019halfdone"
    text = SCAFFOLD.format(key=key).replace('"""TODO: exact title of the paper.', '"""A Real Title.')
    text = text.replace("TODO: Surname", "Lee")
    (tmp_path / f"{key}.py").write_text(text)
    _import_method_file(tmp_path / f"{key}.py", key)
    try:
        assert "line 20 still raises the `mcbench new-method` placeholder" in REGISTRY.get(key).unfinished
    finally:
        _forget(key)


def test_a_method_file_that_does_not_import_is_recorded_not_raised(tmp_path, monkeypatch):
    (tmp_path / "lee2019broken.py").write_text("def oops(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry()
    reg._import("lee2019broken", "methods/pruning/lee2019broken.py", "lee2019broken")
    assert reg.broken["lee2019broken"].startswith("methods/pruning/lee2019broken.py does not import: SyntaxError")
    assert "lee2019broken" in reg.unusable()
    with pytest.raises(UnknownMethodError, match="'lee2019broken' cannot be used: .* does not import"):
        reg.get("lee2019broken")


def test_the_real_registry_has_no_broken_or_unfinished_method():
    """CI stays loud: leaving methods out of the default sweep is for a user's half-written file only."""
    assert REGISTRY.unusable() == {}


def test_catalog_validate_reports_a_method_file_that_does_not_import(monkeypatch):
    from mcbench.catalog import load_catalog
    from mcbench.catalog.registry_check import check_registry

    reg = Registry()
    reg.broken["zhu2017prune"] = "methods/pruning/zhu2017prune.py does not import: SyntaxError: invalid syntax"
    problems = check_registry(load_catalog(), reg)
    assert any("zhu2017prune.py:1: import: does not import: SyntaxError" in p for p in problems), problems
    assert not any("zhu2017prune" in p and "no method is registered" in p for p in problems), problems


@pytest.mark.parametrize("args", [["methods"], ["tasks"], ["catalog", "list"]])
def test_listing_commands_survive_an_unfinished_scaffold(unfinished, args):
    r = invoke(*args)
    assert r.exit_code == 0, r.output


def test_one_line_helper_keeps_catalog_problems_to_one_line():
    from mcbench.benchmarks.cli_errors import one_line
    from mcbench.catalog import CatalogError

    msg = one_line(CatalogError(["a.yaml:1: key: bad", "b.yaml:2: family: bad", "c.bib:3: title: bad"]))
    assert msg == "a.yaml:1: key: bad (+2 more lines; --debug shows all)"


def test_scaffold_example_is_a_valid_python_module():
    compile(textwrap.dedent(SCAFFOLD.format(key="lee2019x")), "x.py", "exec")
