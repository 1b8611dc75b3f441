"""Identity that follows the code and the data, and runs independent of cache state.

Each test reproduces a finding of issue 15 on digits/smoke: a cold and a warm
teacher cache give the same row; a changed harness or method module means a
rerun (and, for the harness, a retrain); a checkpoint of another seed, dataset
or code version is refused in one line; another ``--threads`` is another row,
and the leaderboard never averages across thread counts.
"""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from mcbench.benchmarks import runner
from mcbench.benchmarks import train as train_module
from mcbench.benchmarks.errors import CheckpointError
from mcbench.benchmarks.leaderboard import aggregate
from mcbench.benchmarks.runner import Harness, SweepConfig, run_sweep
from mcbench.methods.registry import REGISTRY


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _cfg(tmp: Path, methods: list[str], seeds=(0,), threads: int = 2, db: str = "r.sqlite") -> SweepConfig:
    return SweepConfig(task="digits", budget="smoke", methods=methods, seeds=list(seeds), threads=threads,
                       db=tmp / db, cache_dir=tmp / "ckpt")


def _sweep(cfg: SweepConfig, digits, log: list[str] | None = None):
    return run_sweep(cfg, splits=digits, log=(log.append if log is not None else lambda *_: None))


def _state_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode() + v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _edited_copy(module, tmp: Path) -> str:
    """A copy of ``module``'s source with one added comment line, as an edit would leave it."""
    src = Path(module.__file__)
    dst = tmp / "edited" / src.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(src.read_text() + "\n# edited: a change the harness cannot prove harmless\n")
    return str(dst)


def _ckpts(cfg: SweepConfig) -> set[Path]:
    return set(Path(cfg.cache_dir).glob("*.safetensors"))


# --------------------------------------------------------------------------- runs independent of cache state
@pytest.mark.slow
def test_cold_and_warm_teacher_give_identical_rows(tmp_path, digits, monkeypatch):
    """hinton2015distilling seed 1: teacher trained inside the run (cold) vs loaded from the cache (warm)."""
    weights: list[str] = []
    compress = Harness._compress

    def spy(self, spec):
        result = compress(self, spec)
        weights.append(_state_hash(result[0].model))
        return result

    monkeypatch.setattr(Harness, "_compress", spy)
    cold = _sweep(_cfg(tmp_path, ["hinton2015distilling"], seeds=[1], db="cold.sqlite"), digits)
    assert len(_ckpts(_cfg(tmp_path, []))) == 1  # the teacher was trained and cached during the cold run
    warm = _sweep(_cfg(tmp_path, ["hinton2015distilling"], seeds=[1], db="warm.sqlite"), digits)
    assert len(cold) == len(warm) == 1 and cold[0].run_id == warm[0].run_id
    assert weights[0] == weights[1], "the distilled student differs with the cache state"
    assert cold[0].top1_acc_pct == warm[0].top1_acc_pct
    assert cold[0].val_top1_acc_pct == warm[0].val_top1_acc_pct


def test_training_a_dependency_leaves_the_callers_rng_alone(smoke_harness):
    """Whether ``trained`` loads or trains, the caller's random stream continues where it was."""
    h = smoke_harness
    for _ in range(2):  # first call may train (cold), the second loads (warm)
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        h.trained("student", 7)
        assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------- identity that follows the code
def test_harness_code_change_reruns_and_retrains(tmp_path, digits, monkeypatch):
    cfg = _cfg(tmp_path, ["baseline"])
    first = _sweep(cfg, digits)
    ckpts = _ckpts(cfg)
    assert len(first) == 1 and len(ckpts) == 1
    assert _sweep(cfg, digits) == []  # unchanged code: already stored

    monkeypatch.setattr(train_module, "__file__", _edited_copy(train_module, tmp_path))
    log: list[str] = []
    again = _sweep(cfg, digits, log)
    assert len(again) == 1, f"a changed training loop must rerun the row; log: {log}"
    assert again[0].run_id != first[0].run_id
    assert again[0].code_fingerprint != first[0].code_fingerprint
    new = _ckpts(cfg) - ckpts
    assert len(new) == 1, "a changed training loop must retrain the baseline, not serve the cached one"

    # the old code's checkpoint, placed in the new code's slot, is refused
    shutil.copyfile(next(iter(ckpts)), next(iter(new)))
    with pytest.raises(CheckpointError) as e:
        Harness(cfg, splits=digits, log=lambda *_: None).trained("baseline", 0)
    assert "\n" not in str(e.value) and "code fingerprint" in str(e.value)


@pytest.mark.slow
def test_method_code_change_reruns_the_row_but_keeps_the_teacher(tmp_path, digits, monkeypatch):
    cfg = _cfg(tmp_path, ["hinton2015distilling"])
    first = _sweep(cfg, digits)
    ckpts = _ckpts(cfg)
    assert len(first) == 1 and len(ckpts) == 1  # the teacher
    assert _sweep(cfg, digits) == []

    module = __import__(REGISTRY.get("hinton2015distilling").module, fromlist=["_"])
    monkeypatch.setattr(module, "__file__", _edited_copy(module, tmp_path))
    again = _sweep(cfg, digits)
    assert len(again) == 1 and again[0].run_id != first[0].run_id
    assert _ckpts(cfg) == ckpts  # the teacher's code did not change: it is not retrained


def test_plan_keys_rows_by_method_code(smoke_harness, monkeypatch, tmp_path):
    """Editing one paper's file changes that paper's run ids only."""
    h = smoke_harness
    cfg = replace(h.cfg, methods=["baseline", "hinton2015distilling", "zhu2017prune"])
    before = {s.method: s.run_id for s in h.plan(cfg)}
    module = __import__(REGISTRY.get("zhu2017prune").module, fromlist=["_"])
    monkeypatch.setattr(module, "__file__", _edited_copy(module, tmp_path))
    after = {s.method: s.run_id for s in h.plan(cfg)}
    assert after["zhu2017prune"] != before["zhu2017prune"]
    assert after["baseline"] == before["baseline"] and after["hinton2015distilling"] == before["hinton2015distilling"]


# --------------------------------------------------------------------------- cache identity check
def test_swapped_seed_checkpoints_are_refused(tmp_path, digits):
    h = Harness(_cfg(tmp_path, ["baseline"]), splits=digits, log=lambda *_: None)
    h.trained("baseline", 0)
    (seed0,) = _ckpts(h.cfg)
    h.trained("baseline", 1)
    (seed1,) = _ckpts(h.cfg) - {seed0}
    a, b = seed0.read_bytes(), seed1.read_bytes()
    seed0.write_bytes(b)
    seed1.write_bytes(a)
    with pytest.raises(CheckpointError) as e:
        h.trained("baseline", 1)
    msg = str(e.value)
    assert "\n" not in msg and "seed 0 vs 1" in msg, msg


def test_checkpoint_of_another_dataset_is_refused(tmp_path, digits):
    other = replace(digits, x_train=digits.x_train.flip(-1), x_val=digits.x_val.flip(-1),
                    x_test=digits.x_test.flip(-1), label="digits-mirrored")
    ha = Harness(_cfg(tmp_path, ["baseline"]), splits=digits, log=lambda *_: None)
    hb = Harness(_cfg(tmp_path, ["baseline"]), splits=other, log=lambda *_: None)
    assert ha.data_fingerprint != hb.data_fingerprint
    ha.trained("baseline", 0)
    (mine,) = _ckpts(ha.cfg)
    hb.trained("baseline", 0)
    (theirs,) = _ckpts(hb.cfg) - {mine}
    shutil.copyfile(mine, theirs)
    with pytest.raises(CheckpointError) as e:
        hb.trained("baseline", 0)
    msg = str(e.value)
    assert "\n" not in msg
    assert "dataset digits vs digits-mirrored" in msg and ha.data_fingerprint in msg and hb.data_fingerprint in msg


def test_data_fingerprint_follows_the_tensors(digits):
    from mcbench.benchmarks.fingerprint import tensors_fingerprint

    same = {"x": digits.x_test.clone(), "y": digits.y_test.clone()}
    one_label = digits.y_test.clone()
    one_label[0] = (one_label[0] + 1) % 10
    assert tensors_fingerprint(same) == tensors_fingerprint({"x": digits.x_test, "y": digits.y_test})
    assert tensors_fingerprint({"x": digits.x_test, "y": one_label}) != tensors_fingerprint(same)
    assert tensors_fingerprint({"x": digits.x_test[:-1], "y": digits.y_test}) != tensors_fingerprint(same)


# --------------------------------------------------------------------------- settings are part of a row
def test_another_thread_count_is_another_row(tmp_path, digits):
    two = _sweep(_cfg(tmp_path, ["baseline"], threads=2), digits)
    one = _sweep(_cfg(tmp_path, ["baseline"], threads=1), digits)
    assert len(two) == len(one) == 1, "resuming with --threads 1 must run new rows, not reuse 2-thread ones"
    assert one[0].run_id != two[0].run_id and (one[0].cpu_threads, two[0].cpu_threads) == (1, 2)


def test_leaderboard_never_averages_across_thread_counts_or_devices():
    base = {"task": "t", "dataset": "d", "budget": "b", "method": "m", "family": "x", "config_hash": "h",
            "timestamp_utc": "2026-01-01", "compression_real": True, "top1_acc_pct": 90.0}
    rows = [{**base, "seed": 0, "cpu_threads": 2, "device": "cpu", "latency_ms_p50_cpu_b1": 1.0},
            {**base, "seed": 1, "cpu_threads": 2, "device": "cpu", "latency_ms_p50_cpu_b1": 1.2},
            {**base, "seed": 2, "cpu_threads": 1, "device": "cpu", "latency_ms_p50_cpu_b1": 3.0},
            {**base, "seed": 0, "cpu_threads": 2, "device": "cuda", "latency_ms_p50_cpu_b1": 5.0}]
    agg = aggregate(pd.DataFrame(rows)).set_index(["cpu_threads", "device"])
    assert len(agg) == 3
    assert agg.loc[(2, "cpu"), "latency_ms_p50_cpu_b1_mean"] == pytest.approx(1.1)
    assert agg.loc[(2, "cpu"), "n_seeds"] == 2
    assert agg.loc[(1, "cpu"), "latency_ms_p50_cpu_b1_mean"] == 3.0
    assert agg.loc[(2, "cuda"), "latency_ms_p50_cpu_b1_mean"] == 5.0


def test_row_records_code_and_data_fingerprints(tmp_path, digits):
    (row,) = _sweep(_cfg(tmp_path, ["baseline"]), digits)
    h = Harness(_cfg(tmp_path, ["baseline"]), splits=digits, log=lambda *_: None)
    assert row.data_fingerprint == h.data_fingerprint and len(row.code_fingerprint) >= 12
    assert row.code_fingerprint == runner.fingerprint.row_fingerprint(None)
