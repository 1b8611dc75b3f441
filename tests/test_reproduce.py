"""Paper settings (catalog/settings/*.yaml) and `mcbench reproduce`."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mcbench.benchmarks import archs
from mcbench.benchmarks.cli import app
from mcbench.benchmarks.reproduce import references_for, reproduce, resolve, setting_task
from mcbench.benchmarks.store import ResultStore
from mcbench.benchmarks.tasks import get_task
from mcbench.catalog.loader import load_catalog
from mcbench.catalog.settings import SettingError, check_against_catalog, load_all, load_setting, parse_setting
from mcbench.methods.registry import REGISTRY

PILOT_SETTINGS = ("hinton2015distilling", "zhu2017prune", "jacob2017quantization", "courbariaux2016binarized",
                  "sandler2018mobilenetv2", "howard2017mobilenets")


def test_every_implemented_pilot_has_a_valid_setting():
    settings = load_all()
    assert set(PILOT_SETTINGS) <= set(settings)
    catalog = load_catalog()
    assert check_against_catalog(settings, {k: len(p.claims) for k, p in catalog.papers.items()}) == []
    for key, s in settings.items():
        assert key in REGISTRY, f"setting {key} has no registered method"
        assert s.departures and s.title
        task = setting_task(s, get_task(s.substitute))
        for role in ("baseline", "teacher", "student"):  # every architecture builds for the substitute's input
            with torch.device("meta"):  # shapes only: no memory, no init
                model = archs.build(getattr(task, role), task.in_chans, 10, task.input_size)
                assert model(torch.zeros(2, task.in_chans, *task.input_size)).shape == (2, 10)
        assert task.recipe("cpu").epochs_scratch <= task.recipe("paper").epochs_scratch


def test_hinton_setting_is_the_papers_mnist_experiment():
    s = load_setting("hinton2015distilling")
    assert s.task == "mnist" and s.claims == (0,)
    assert s.architectures["teacher"].widths == (1200, 1200) and s.architectures["teacher"].dropout > 0
    assert s.architectures["student"].widths == (800, 800) and s.architectures["student"].dropout == 0
    assert s.method_config["temperature"] == 20


def _write(tmp: Path, key: str, text: str) -> Path:
    p = tmp / f"{key}.yaml"
    p.write_text(text)
    return p


GOOD = """schema_version: 1
key: hinton2015distilling
title: tiny MLP distillation for tests
task: mnist
substitute: digits
architectures:
  teacher: {name: mlp, widths: [48]}
  student: {name: mlp, widths: [16]}
method_config: {temperature: 4.0}
budgets:
  cpu: {epochs_scratch: 2, epochs_finetune: 1, batch_size: 64, lr: 5.0e-3, latency_warmup: 1, latency_runs: 3, calibration_batches: 1}
  paper: {epochs_scratch: 3, epochs_finetune: 1}
claims: [0]
departures: a test setting
"""


def test_setting_problems_name_the_field(tmp_path):
    bad = GOOD.replace("name: mlp, widths: [48]", "name: resnet9000, widths: [48]").replace("lr: 5.0e-3", "lrate: 1")
    bad = bad.replace("substitute: digits", "substitute: imagenet")
    with pytest.raises(SettingError) as e:
        parse_setting(_write(tmp_path, "hinton2015distilling", bad))
    text = str(e.value)
    assert "architectures.teacher.name" in text and "resnet9000" in text
    assert "budgets.cpu.lrate" in text and "substitute" in text
    with pytest.raises(SettingError, match="does not match the file name"):
        parse_setting(_write(tmp_path, "other2020key", GOOD))
    with pytest.raises(SettingError, match="no paper setting"):
        load_setting("nobody2020nothing", tmp_path)


def test_substitute_is_used_and_stated_without_the_papers_data(tmp_path):
    _write(tmp_path, "hinton2015distilling", GOOD)
    res = resolve(load_setting("hinton2015distilling", tmp_path), data_dir=None)
    assert res.substituted and res.task.name == "digits"
    assert res.dataset_label.endswith("(substitute for mnist)") and "--data-dir" in res.why
    assert res.task.student == archs.ArchSpec("mlp", (16,)) and res.task.recipe("cpu").epochs_scratch == 2


def test_references_follow_the_claims_reference():
    assert references_for("hinton2015distilling") == ["student"]
    assert references_for("zhu2017prune") == ["baseline"]


@pytest.mark.slow
def test_reproduce_runs_the_setting_into_the_store(tmp_path):
    _write(tmp_path, "hinton2015distilling", GOOD)
    db = tmp_path / "r.sqlite"
    rows = reproduce("hinton2015distilling", budget="cpu", seeds=1, db=db, cache_dir=tmp_path / "c",
                     settings_root=tmp_path, log=lambda *_: None)
    assert {r.method for r in rows} == {"student", "hinton2015distilling"}
    assert {r.setting for r in rows} == {"hinton2015distilling/cpu"}
    assert all(r.dataset == "digits (substitute for mnist)" and r.budget == "cpu" for r in rows)
    assert all(r.params_count == 64 * 16 + 16 + 16 * 10 + 10 for r in rows)  # the setting's 1x16 MLP student
    # the same sweep again finds its rows; the shared leaderboard's rows are kept apart by `setting`
    assert reproduce("hinton2015distilling", budget="cpu", seeds=1, db=db, cache_dir=tmp_path / "c",
                     settings_root=tmp_path, log=lambda *_: None) == []
    with ResultStore(db) as store:
        assert set(store.dataframe()["setting"]) == {"hinton2015distilling/cpu"}


def test_reproduce_cli_refuses_bad_input_in_one_line(tmp_path):
    r = CliRunner().invoke(app, ["reproduce", "nobody2020nothing", "--db", str(tmp_path / "x.sqlite")])
    assert r.exit_code != 0 and "no paper setting" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["reproduce", "hinton2015distilling", "--budget", "default"])
    assert r.exit_code != 0 and "expected one of cpu, paper" in r.output
    r = CliRunner().invoke(app, ["reproduce", "hinton2015distilling", "--data-dir", str(tmp_path)])
    assert r.exit_code != 0 and "Traceback" not in r.output


def test_catalog_validate_reports_setting_problems(tmp_path):
    import shutil

    root = tmp_path / "catalog"
    shutil.copytree(Path(__file__).parent / "fixtures" / "catalog" / "valid", root)
    (root / "settings").mkdir()
    _write(root / "settings", "smith2015distilling", GOOD.replace("hinton2015distilling", "smith2015distilling")
           .replace("claims: [0]", "claims: [7]"))
    r = CliRunner().invoke(app, ["catalog", "validate", "--root", str(root), "--no-registry"])
    assert r.exit_code != 0 and "claims: index 7 out of range" in r.output


def test_variant_roles_become_task_variants(tmp_path):
    text = GOOD.replace("  student: {name: mlp, widths: [16]}\n",
                        "  student: {name: mlp, widths: [16]}\n  student_thin_deep: {name: cnn, widths: [4, 4], depth: 3}\n")
    _write(tmp_path, "hinton2015distilling", text)
    task = setting_task(load_setting("hinton2015distilling", tmp_path), get_task("digits"))
    assert task.arch("student_thin_deep") == archs.ArchSpec("cnn", (4, 4), depth=3)
    assert task.arch("student") == archs.ArchSpec("mlp", (16,))
