"""The harness end to end on digits/smoke: what every result row holds, and the leaderboard over rows."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from mcbench.benchmarks.leaderboard import aggregate, latest_configs, pareto_front
from mcbench.benchmarks.record import COLUMNS
from mcbench.benchmarks.tasks import TASKS


@pytest.fixture(scope="module")
def rows(smoke_harness):
    h = smoke_harness
    specs = h.plan(h.cfg.__class__(task="digits", budget="smoke", methods=["baseline", "teacher", "jacob2017quantization",
                                                                           "zhu2017prune"], seeds=[0]))
    return {s.method: h.run(s) for s in specs}


def test_row_has_every_field_with_sane_values(rows):
    for method, r in rows.items():
        d = r.to_dict()
        assert tuple(d) == COLUMNS
        assert 0 <= r.top1_acc_pct <= 100 and 0 <= r.val_top1_acc_pct <= 100
        assert r.selection_rule.startswith("best validation")
        assert r.params_nonzero <= r.params_count
        assert r.size_bytes_gzip < r.size_bytes_disk
        assert r.macs * 2 == r.flops > 0
        assert r.latency_ms_p50_cpu_b1 <= r.latency_ms_p90_cpu_b1
        assert r.speedup_cpu_b1 == pytest.approx(r.baseline_latency_ms_p50_cpu_b1 / r.latency_ms_p50_cpu_b1)
        assert r.cpu_threads == 2 and r.torch_version and r.cpu_model and r.git_commit and r.timestamp_utc
        assert r.wall_time_s > 0 and r.peak_mem_bytes > 0
        assert r.matmul_gflops_per_s > 0
        json.loads(r.config_json)
    assert rows["baseline"].macs_ratio_vs_baseline == 1.0


def test_latency_is_deploy_form_side_by_side_with_the_deploy_form_baseline(rows):
    recipe = TASKS["digits"].recipe("smoke")
    for method, r in rows.items():
        for path in (r.baseline_latency_path_cpu_b1, r.baseline_latency_path_cpu_b64):
            assert path.startswith("fp32 bn-folded") and "fallback" not in path, (method, path)
        assert r.latency_samples_cpu_b1 == recipe.latency_runs and r.latency_samples_cpu_b64 == recipe.latency_runs_b64
        assert r.allocator
    b = rows["baseline"]
    assert b.latency_path_cpu_b64.startswith("fp32 bn-folded") and "fallback" not in b.latency_path_cpu_b64
    # the baseline timed against itself (both in deploy form): ~1, generous margin for a shared machine
    assert 1 / 3 < b.speedup_cpu_b1 < 3 and 1 / 3 < b.speedup_cpu_b64 < 3
    q = rows["jacob2017quantization"]
    assert q.latency_path_cpu_b1.startswith("int8 ") and q.latency_path_cpu_b64.startswith("int8 ")
    assert "fallback" not in q.latency_path_cpu_b64


def test_default_budgets_time_at_least_30_samples_at_batch_64():
    for task in TASKS.values():
        for budget in ("default", "paper"):
            assert task.recipe(budget).latency_runs_b64 >= 30, (task.name, budget)


def test_teacher_is_a_reference_row(rows):
    from mcbench.benchmarks.archs import build
    from mcbench.benchmarks.measure import count_params

    t = rows["teacher"]
    assert t.family == "reference" and t.seed == 0
    assert t.params_count == count_params(build(TASKS["digits"].teacher, 1, 10, (8, 8)))[0]
    assert t.params_count > rows["baseline"].params_count


def test_default_sweep_plans_teacher_rows_and_distillation_uses_the_same_seeds_teacher(smoke_harness, monkeypatch):
    from mcbench.benchmarks.runner import REFERENCES, SweepConfig, plan

    assert "teacher" in REFERENCES
    specs = plan(SweepConfig(task="digits", budget="smoke", seeds=[0, 1, 2]), smoke_harness.task, "digits")
    assert sorted(s.seed for s in specs if s.method == "teacher") == [0, 1, 2]
    asked = []
    monkeypatch.setattr(smoke_harness, "trained", lambda role, seed: (asked.append((role, seed)), (None, None))[1])
    for seed in (2, 1):
        smoke_harness.context(seed).load_teacher()
    assert asked == [("teacher", 2), ("teacher", 1)]


def test_training_throughput_is_reported(rows):
    r = rows["baseline"]
    assert r.train_gflops_per_s > 0
    assert r.train_gflops_per_s < r.matmul_gflops_per_s * 1.5  # sanity: small convs do not beat a big matmul


def test_real_and_simulated_are_flagged(rows):
    q, p, b = rows["jacob2017quantization"], rows["zhu2017prune"], rows["baseline"]
    assert q.compression_real and q.quant_engine == "onednn" and "int8" in q.compression_note
    assert q.bits_per_weight_effective == 8 and q.size_bytes_theoretical < b.size_bytes_theoretical / 3
    # int8-packed weights are still counted; BN is folded: its 2 x C affine values become C conv biases
    assert q.params_count == b.params_count - sum(TASKS["digits"].baseline.widths)
    assert not p.compression_real
    assert p.params_nonzero < 0.3 * p.params_count  # 80% of layer weights are zero
    assert p.size_bytes_gzip < b.size_bytes_gzip  # zeros compress: the storage gain is visible only after gzip
    extra = json.loads(p.extra_json)
    assert extra["achieved_sparsity_pruned_layers"] == pytest.approx(0.8, abs=0.01)


def _fake_runs():
    base = {"task": "t", "dataset": "d", "budget": "b", "family": "x"}
    rows = []
    for method, accs, lat, cfg, ts in [("a", [90.0, 92.0], 1.0, "h1", "2026-01-02"), ("b", [80.0, 80.0], 0.5, "h1", "2026-01-02"),
                                       ("c", [70.0], 2.0, "h1", "2026-01-02"), ("a", [10.0], 1.0, "h0", "2026-01-01")]:
        for seed, acc in enumerate(accs):
            rows.append({**base, "method": method, "seed": seed, "top1_acc_pct": acc, "latency_ms_p50_cpu_b1": lat,
                         "config_hash": cfg, "timestamp_utc": ts, "compression_real": True})
    return pd.DataFrame(rows)


def test_aggregate_mean_std_and_latest_config_only():
    runs = _fake_runs()
    assert len(runs) == 6 and len(latest_configs(runs)) == 5  # the stale h0 row of method a is dropped
    agg = aggregate(runs).set_index("method")
    assert agg.loc["a", "top1_acc_pct_mean"] == 91.0
    assert agg.loc["a", "top1_acc_pct_std"] == pytest.approx(2 ** 0.5)  # sample std of 90, 92
    assert agg.loc["a", "n_seeds"] == 2
    assert pd.isna(agg.loc["c", "top1_acc_pct_std"])
    assert list(aggregate(runs)["method"]) == ["a", "b", "c"]  # best accuracy first


def test_pareto_front_drops_dominated():
    agg = aggregate(_fake_runs())
    front = pareto_front(agg, "latency_ms_p50_cpu_b1_mean")
    assert list(front["method"]) == ["b", "a"]  # c is slower and less accurate than a


def test_row_validation_score_is_measured_on_the_returned_model(smoke_harness, monkeypatch, digits):
    """The row's val top-1 is the harness's measurement of the model the row scores, not the method's report
    (a QAT row reported its fake-quantized model's best epoch, which on a GPU differed from its int8 model's)."""
    import copy
    from dataclasses import replace

    from mcbench.benchmarks.train import accuracy_pct
    from mcbench.methods.registry import REGISTRY

    cls = type(REGISTRY.create("zhu2017prune"))
    honest_apply, returned = cls.apply, []

    def misreporting_apply(self, ctx):
        out = honest_apply(self, ctx)
        returned.append(copy.deepcopy(out.model))
        out.train_report = replace(out.train_report, val_top1_acc_pct=12.5)
        return out

    monkeypatch.setattr(cls, "apply", misreporting_apply)
    h = smoke_harness
    (spec,) = h.plan(h.cfg.__class__(task="digits", budget="smoke", methods=["zhu2017prune"], seeds=[0]))
    row = h.run(spec)
    assert len(returned) == 1
    assert row.val_top1_acc_pct == pytest.approx(accuracy_pct(returned[0], digits.x_val, digits.y_val), abs=1e-9)
    assert row.val_top1_acc_pct != 12.5


def test_a_stage_trained_now_is_returned_as_a_cache_hit_returns_it(tmp_path, digits):
    """On a cache miss the harness returns what a later hit returns: the same weights and buffers, in the same
    layout, and no state a checkpoint does not hold (the trained object kept its last step's .grad tensors)."""
    import torch

    from mcbench.benchmarks.runner import Harness, SweepConfig

    h = Harness(SweepConfig(task="digits", budget="smoke", seeds=[0], threads=2, db=tmp_path / "r.sqlite",
                            cache_dir=tmp_path / "ckpt"), splits=digits, log=lambda *_: None)
    miss, _ = h.trained("baseline", 0)
    hit, _ = h.trained("baseline", 0)
    assert miss is not hit and all(p.grad is None for p in miss.parameters())
    a, b = miss.state_dict(), hit.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) and a[k].stride() == b[k].stride() for k in a)
