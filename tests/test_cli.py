"""The CLI end to end on digits, and every bad input: one clear line, non-zero exit, no partial row."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from mcbench.benchmarks.archs import build
from mcbench.benchmarks.tasks import TASKS
from helpers import mcbench, rows

SMOKE = ("--task", "digits", "--budget", "smoke", "--seeds", "1")


def assert_clean_failure(p, *needles):
    assert p.returncode != 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    msg = p.stderr.strip()
    for n in needles:
        assert n in msg, msg


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """One finished baseline run (store + cached checkpoint) shared by the checkpoint tests."""
    root = tmp_path_factory.mktemp("cli")
    p = mcbench("run", *SMOKE, "--methods", "baseline", "--db", str(root / "r.sqlite"),
                "--cache-dir", str(root / "ckpt"))
    assert p.returncode == 0, p.stderr
    return root


def test_run_then_rerun_skips(populated):
    assert len(rows(populated / "r.sqlite")) == 1
    p = mcbench("run", *SMOKE, "--methods", "baseline", "--db", str(populated / "r.sqlite"),
                "--cache-dir", str(populated / "ckpt"))
    assert p.returncode == 0 and "1 of 1 runs already stored" in p.stdout.replace("\n", " ")
    assert len(rows(populated / "r.sqlite")) == 1


def test_leaderboard_writes_table_csv_plots_and_snapshot(populated, tmp_path):
    p = mcbench("leaderboard", "--db", str(populated / "r.sqlite"), "--out", str(tmp_path / "lb"),
                "--export", "--snapshot", str(tmp_path / "snap"), "--allow-dirty")  # the tree under test may be dirty
    assert p.returncode == 0, p.stderr
    assert "baseline" in p.stdout
    assert (tmp_path / "lb" / "leaderboard.csv").exists()
    assert sorted(f.name for f in (tmp_path / "lb").glob("*.png")) == ["digits-smoke-latency.png", "digits-smoke-size.png"]
    env = json.loads((tmp_path / "snap" / "env.json").read_text())
    assert env["rows"] == 1 and "cpu_model" in env
    assert len(pd.read_csv(tmp_path / "snap" / "runs.csv")) == 1


def test_listing_commands():
    p = mcbench("methods")
    assert p.returncode == 0 and "hinton2015distilling" in p.stdout and "methods/pruning/zhu2017prune.py" in p.stdout
    p = mcbench("tasks", "--json")
    data = json.loads(p.stdout)
    assert {t["task"] for t in data} == set(TASKS)
    assert all(set(t["recipes"]) == {"smoke", "default", "paper"} for t in data)
    p = mcbench("env")
    assert p.returncode == 0 and "torch_version" in p.stdout


def test_unknown_method(tmp_path):
    p = mcbench("run", *SMOKE, "--methods", "baseline,hinton2015distiling", "--db", str(tmp_path / "r.sqlite"))
    assert_clean_failure(p, "unknown method 'hinton2015distiling'", "did you mean hinton2015distilling")
    assert rows(tmp_path / "r.sqlite") == []


def test_unknown_task(tmp_path):
    p = mcbench("run", "--task", "imagenet", "--db", str(tmp_path / "r.sqlite"))
    assert_clean_failure(p, "unknown task 'imagenet'")
    assert rows(tmp_path / "r.sqlite") == []


def test_unknown_budget(tmp_path):
    p = mcbench("run", "--task", "digits", "--budget", "huge", "--db", str(tmp_path / "r.sqlite"))
    assert_clean_failure(p, "unknown budget 'huge'")


@pytest.mark.parametrize("args, needle", [
    (("--task", "mnist"), "needs --data-dir"),
    (("--task", "mnist", "--data-dir", "/nonexistent/mnist"), "does not exist"),
    (("--task", "cifar10", "--data-dir", "/tmp"), "cifar10"),
])
def test_missing_dataset(tmp_path, args, needle):
    p = mcbench("run", *args, "--budget", "smoke", "--db", str(tmp_path / "r.sqlite"))
    assert_clean_failure(p, needle)
    assert rows(tmp_path / "r.sqlite") == []


def test_truncated_idx_dataset(tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    (d / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + (10).to_bytes(4, "big") * 3 + b"\x00" * 7)
    p = mcbench("run", "--task", "mnist", "--data-dir", str(d), "--budget", "smoke", "--db", str(tmp_path / "r.sqlite"))
    assert_clean_failure(p, "truncated")


@pytest.mark.parametrize("args, needle", [
    (("--seeds", "0"), "--seeds"),
    (("--device", "tpu"), "--device must be cpu or cuda"),
    (("--config", "{not json"), "Expecting property name"),
    (("--config", '{"zhu2017prune": {"sparsity": 0.5}}', "--methods", "zhu2017prune"), "unknown config option"),
])
def test_invalid_options(tmp_path, args, needle):
    p = mcbench("run", "--task", "digits", "--budget", "smoke", *args, "--db", str(tmp_path / "r.sqlite"))
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert needle in p.stderr or needle in p.stdout
    assert rows(tmp_path / "r.sqlite") == []


def _checkpoint(root):
    files = list((root / "ckpt").glob("baseline-*.safetensors"))
    assert len(files) == 1
    return files[0]


def test_corrupted_checkpoint(populated, tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / _checkpoint(populated).name).write_bytes(b"this is not a safetensors file")
    p = mcbench("run", *SMOKE, "--methods", "baseline", "--db", str(tmp_path / "r.sqlite"), "--cache-dir", str(ckpt))
    assert_clean_failure(p, "corrupted", "delete it to retrain")
    assert rows(tmp_path / "r.sqlite") == []


def test_mismatched_checkpoint(populated, tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    student = build(TASKS["digits"].student, 1, 10)  # other widths under the baseline's name and identity
    real = _checkpoint(populated)
    with safe_open(str(real), framework="pt") as f:
        meta = f.metadata()
    save_file({k: v.contiguous() for k, v in student.state_dict().items()}, str(ckpt / real.name), metadata=meta)
    p = mcbench("run", *SMOKE, "--methods", "baseline", "--db", str(tmp_path / "r.sqlite"), "--cache-dir", str(ckpt))
    assert_clean_failure(p, "does not match the architecture")
    assert rows(tmp_path / "r.sqlite") == []


def test_fmnist_missing_falls_back_to_digits_and_labels_rows(tmp_path, monkeypatch):
    """The main job's path when Fashion-MNIST cannot be installed: a clear warning, digits, labelled rows."""
    from typer.testing import CliRunner

    from mcbench.benchmarks import data
    from mcbench.benchmarks.cli import FALLBACK_LABEL, app

    def missing():
        raise data.DatasetMissingError("Fashion-MNIST not found: install Debian's package `dataset-fashion-mnist`")

    monkeypatch.setattr(data, "load_fashion_mnist", missing)
    db = tmp_path / "r.sqlite"
    base = ["run", "--task", "fmnist", "--budget", "smoke", "--seeds", "1", "--methods", "student", "--db", str(db),
            "--cache-dir", str(tmp_path / "ckpt")]
    r = CliRunner().invoke(app, base)
    assert r.exit_code == 1 and "dataset-fashion-mnist" in r.output  # without the flag: a clear error
    assert rows(db) == []
    r = CliRunner().invoke(app, base + ["--fallback-digits"])
    assert r.exit_code == 0, r.output
    assert "Falling back to scikit-learn's digits" in r.output
    import sqlite3

    with sqlite3.connect(db) as c:
        assert c.execute("SELECT task, dataset FROM results").fetchall() == [("digits", FALLBACK_LABEL)]
