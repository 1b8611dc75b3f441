"""Validated method configs and ``--config``: bad values fail at plan time, in one line, before any training."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field
from typer.testing import CliRunner

from mcbench.benchmarks import runner
from mcbench.benchmarks.cli import app
from mcbench.benchmarks.errors import McbenchError
from mcbench.benchmarks.overrides import ConfigFileError, load_overrides
from mcbench.benchmarks.runner import SweepConfig, check_plan
from mcbench.methods.config import ConfigError, rule, validated_config
from mcbench.methods.registry import REGISTRY
from helpers import rows

SMOKE = ["run", "--task", "digits", "--budget", "smoke", "--seeds", "1"]


# --------------------------------------------------------------------------- the validator itself
class _Toy:
    key = "toy2020method"

    @dataclass
    class Config:
        rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
        steps: Annotated[int, Field(ge=1)] = 10
        mode: Literal["a", "b"] = "a"
        flag: bool = True
        name: str = "x"
        sizes: tuple[int, ...] = (1, 2)


@pytest.mark.parametrize("field, value, words", [
    ("rate", -0.1, ["greater than or equal to 0", ">= 0.0"]),
    ("rate", 1.5, ["less than 1", "< 1.0"]),
    ("rate", "high", ["valid number"]),
    ("rate", "0.5", ["valid number"]),          # strict: a string is not a float
    ("rate", True, ["valid number"]),           # nor is a bool
    ("rate", float("nan"), ["finite number"]),
    ("rate", float("inf"), ["finite number"]),
    ("steps", 2.5, ["valid integer"]),
    ("steps", 0, ["greater than or equal to 1"]),
    ("steps", True, ["valid integer"]),
    ("mode", "c", ["'a' or 'b'"]),
    ("flag", 1, ["valid boolean"]),
    ("name", 3, ["valid string"]),
])
def test_a_bad_value_is_one_line_naming_method_field_value_and_rule(field, value, words):
    with pytest.raises(ConfigError) as info:
        validated_config(_Toy, {field: value})
    msg = str(info.value)
    assert "\n" not in msg and isinstance(info.value, ValueError)
    assert msg.startswith(f"toy2020method: config {field}={value!r} (override) rejected: "), msg
    assert f"(rule: {field} is {rule(_Toy.Config, field)})" in msg
    for w in words:
        assert w in msg, (w, msg)


def test_good_values_are_normalised():
    c = validated_config(_Toy, {"rate": 0, "steps": 3, "mode": "b", "sizes": [4, 5]})
    assert (c.rate, c.steps, c.mode, c.sizes) == (0.0, 3, "b", (4, 5))
    assert isinstance(c.rate, float)  # an int where a float is declared: stored as a float (stable config hash)


def test_unknown_option_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"toy2020method: unknown config option\(s\) 'ratio'; known: rate, steps"):
        validated_config(_Toy, {"ratio": 0.5})


def test_cross_field_rule_of_zhu2017prune():
    with pytest.raises(ValueError, match="zhu2017prune: config rejected: initial_sparsity=0.9 > final_sparsity=0.5"):
        REGISTRY.create("zhu2017prune", final_sparsity=0.5, initial_sparsity=0.9)


@pytest.mark.parametrize("key", REGISTRY.keys())
def test_every_registered_default_config_is_valid(key):
    """Defaults pass their own declared rules (validated_config checks defaults too)."""
    method = REGISTRY.create(key)
    assert json.loads(json.dumps(method.config_dict(), allow_nan=False)) == method.config_dict()


@pytest.mark.parametrize("key, field, bad", [
    ("zhu2017prune", "final_sparsity", -0.1), ("zhu2017prune", "final_sparsity", 1.5),
    ("zhu2017prune", "final_sparsity", "high"), ("zhu2017prune", "frequency_steps", 0),
    ("hinton2015distilling", "temperature", 0.0), ("hinton2015distilling", "alpha", 1.5),
    ("jacob2017quantization", "engine", "arm"), ("jacob2017quantization", "freeze_fraction", -0.5),
    ("sandler2018mobilenetv2", "variant", "resnet50"), ("sandler2018mobilenetv2", "stem_stride", 3),
    ("courbariaux2016binarized", "clip_latent_weights", "yes"),
])
def test_the_five_methods_declare_ranges(key, field, bad):
    with pytest.raises(ValueError, match=f"^{key}: config {field}="):
        REGISTRY.create(key, **{field: bad})


# --------------------------------------------------------------------------- plan time
@pytest.mark.parametrize("overrides, words", [
    ({"zhu2017prune": {"final_sparsity": -0.1}}, ["final_sparsity=-0.1", ">= 0.0"]),
    ({"hinton2015distilling": {"alpha": 0.5}}, ["'hinton2015distilling'", "not in this run", "add it to --methods"]),
    ({"nosuch2020method": {"x": 1}}, ["'nosuch2020method'", "not in this run"]),
    ({"baseline": {"x": 1}}, ["reference row"]),
    ({"zhu2017prune": [0.5]}, ["must be a mapping"]),
])
def test_check_plan_refuses_before_any_work(overrides, words):
    cfg = SweepConfig(task="digits", budget="smoke", methods=["baseline", "zhu2017prune"], seeds=[0],
                      overrides=overrides)
    with pytest.raises((McbenchError, ValueError)) as info:
        check_plan(cfg)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_run_sweep_checks_the_plan_before_loading_data_or_training(tmp_path, monkeypatch):
    def no_harness(*a, **k):
        raise AssertionError("the harness (data, training) must not start")

    monkeypatch.setattr(runner, "Harness", no_harness)
    cfg = SweepConfig(task="digits", budget="smoke", methods=["zhu2017prune"], seeds=[0], db=tmp_path / "r.sqlite",
                      overrides={"zhu2017prune": {"final_sparsity": 1.5}})
    with pytest.raises(ValueError, match="final_sparsity=1.5"):
        runner.run_sweep(cfg)
    assert not (tmp_path / "r.sqlite").exists()


def _invoke(args, monkeypatch):
    """The real CLI in-process; a training attempt fails the test."""
    def no_sweep(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(runner, "run_sweep", no_sweep)
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


def _assert_one_line(result, *words):
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize("value, words", [
    (-0.1, ["final_sparsity=-0.1", "greater than or equal to 0"]),
    (1.5, ["final_sparsity=1.5", "less than 1"]),
    ("high", ["final_sparsity='high'", "valid number"]),
])
def test_cli_bad_config_value_fails_in_one_line_before_training(tmp_path, monkeypatch, value, words):
    db = tmp_path / "r.sqlite"
    config = json.dumps({"zhu2017prune": {"final_sparsity": value}})
    r = _invoke(SMOKE + ["--methods", "zhu2017prune", "--config", config, "--db", str(db)], monkeypatch)
    _assert_one_line(r, "zhu2017prune", *words)
    assert rows(db) == [] and not db.exists()


def test_cli_override_for_a_method_not_in_the_run(tmp_path, monkeypatch):
    db = tmp_path / "r.sqlite"
    r = _invoke(SMOKE + ["--methods", "baseline", "--config", '{"zhu2017prune": {"final_sparsity": 0.5}}',
                         "--db", str(db)], monkeypatch)
    _assert_one_line(r, "'zhu2017prune'", "not in this run")
    assert not db.exists()


@pytest.mark.parametrize("text, words", [
    ("{not json", ["invalid JSON", "Expecting property name"]),
    ("[1, 2]", ["neither a JSON object", "file"]),
    ('{"zhu2017prune": 0.5}', ["options of 'zhu2017prune' must be a mapping"]),
    ("missing.yaml", ["cannot read", "missing.yaml"]),
])
def test_cli_malformed_config_fails_in_one_line(tmp_path, monkeypatch, text, words):
    r = _invoke(SMOKE + ["--methods", "zhu2017prune", "--config", text, "--db", str(tmp_path / "r.sqlite")],
                monkeypatch)
    _assert_one_line(r, *words)
    assert not (tmp_path / "r.sqlite").exists()


# --------------------------------------------------------------------------- --config FILE
def test_config_from_yaml_and_json_files(tmp_path):
    y = tmp_path / "sweep.yaml"
    y.write_text("zhu2017prune:\n  final_sparsity: 0.9   # s_f\n  frequency_steps: 5\n")
    j = tmp_path / "sweep.json"
    j.write_text('{"zhu2017prune": {"final_sparsity": 0.9, "frequency_steps": 5}}')
    expected = {"zhu2017prune": {"final_sparsity": 0.9, "frequency_steps": 5}}
    assert load_overrides(str(y)) == load_overrides(str(j)) == load_overrides(j.read_text()) == expected
    assert load_overrides(None) == {} and load_overrides("") == {}


@pytest.mark.parametrize("text, words", [
    ("zhu2017prune: [unclosed\n", ["invalid YAML at line", "sweep.yaml"]),
    ("- a\n- b\n", ["expected a mapping", "got list"]),
    ("zhu2017prune: !!python/object:os.system {}\n", ["invalid YAML"]),  # safe_load only
])
def test_bad_yaml_config_files(tmp_path, text, words):
    y = tmp_path / "sweep.yaml"
    y.write_text(text)
    with pytest.raises(ConfigFileError) as info:
        load_overrides(str(y))
    assert "\n" not in str(info.value)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_cli_config_from_a_yaml_file_reaches_the_planned_runs(tmp_path, monkeypatch):
    """``--config sweep.yaml``: the file's values are what the sweep runs with (captured instead of training)."""
    from mcbench.benchmarks.tasks import get_task

    y = tmp_path / "sweep.yaml"
    y.write_text("zhu2017prune:\n  final_sparsity: 0.6\n")
    seen = {}

    def capture(cfg, **kw):
        seen["cfg"] = cfg
        return []

    monkeypatch.setattr(runner, "run_sweep", capture)
    r = CliRunner().invoke(app, SMOKE + ["--methods", "zhu2017prune", "--config", str(y), "--db",
                                         str(tmp_path / "r.sqlite")])
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert cfg.overrides == {"zhu2017prune": {"final_sparsity": 0.6}}
    (spec,) = runner.plan(cfg, get_task("digits"), "digits")
    assert spec.config["method_config"]["final_sparsity"] == 0.6
