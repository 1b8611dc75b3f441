"""yin2019dreaming: DeepInversion synthesis lowers its objective; KD then sees synthetic images only."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mcbench.benchmarks.archs import ArchSpec, build
from mcbench.benchmarks.runner import plan
from mcbench.benchmarks.tasks import Recipe
from mcbench.benchmarks.train import TrainData, train
from mcbench.methods.distillation.yin2019dreaming import BNStatistics, synthesize, total_variation
from mcbench.methods.registry import REGISTRY

KEY = "yin2019dreaming"
SMALL = dict(num_images=64, iterations=30, batch_size=32, kd_epochs_per_budget_epoch=2)


@pytest.fixture
def poisoned_training_split(smoke_harness):
    """Replace the harness's real training split by NaNs: training on it would diverge (and raise)."""
    smoke_harness.trained("teacher", 0)   # the teacher of seed 0 is trained on real data first (cached)
    real = smoke_harness.data
    smoke_harness.data = TrainData(torch.full_like(real.x_train, float("nan")), real.y_train, real.x_val, real.y_val)
    yield smoke_harness
    smoke_harness.data = real


def test_declared_data_free():
    assert REGISTRY.get(KEY).cls.data_free and REGISTRY.get(KEY).family == "distillation"


def test_synthesis_lowers_its_objective_and_matches_bn_statistics(digits):
    torch.manual_seed(0)
    teacher = build(ArchSpec("cnn", (8, 16)), 1, 10, (8, 8))
    train(teacher, TrainData(digits.x_train, digits.y_train, digits.x_val, digits.y_val),
          Recipe(epochs_scratch=3, epochs_finetune=1, batch_size=64, lr=1e-2), epochs=3, seed=0)
    syn = synthesize(teacher, 20, 10, (1, 8, 8), iterations=60, batch_size=20, lr=0.05, alpha_f=1.0, alpha_tv=0.5,
                     alpha_l2=0.01, jitter_px=1, generator=torch.Generator().manual_seed(0))
    assert syn.images.shape == (20, 1, 8, 8) and 0 <= syn.images.min() and syn.images.max() <= 1
    assert syn.objective_last < 0.6 * syn.objective_first
    assert syn.bn_last < 0.5 * syn.bn_first            # R_feature: BN statistics matched
    assert syn.teacher_agreement_pct >= 70              # the teacher sees the target classes (chance: 10%)
    assert syn.targets.tolist() == [i % 10 for i in range(20)] and syn.image_iterations == 20 * 60


def test_bn_statistics_term_is_zero_on_matching_statistics():
    bn = nn.BatchNorm2d(3)
    x = torch.randn(16, 3, 4, 4) * 2 + 1
    bn.running_mean.copy_(x.mean((0, 2, 3)))
    bn.running_var.copy_(x.var((0, 2, 3), unbiased=False))
    stats = BNStatistics(nn.Sequential(bn).eval())
    nn.Sequential(bn)(x)
    assert stats.pop().item() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="BatchNorm"):
        BNStatistics(nn.Linear(2, 2))
    flat = torch.ones(1, 1, 4, 4)
    assert total_variation(flat).item() == 0 and total_variation(torch.rand(1, 1, 4, 4)).item() > 0


def test_method_never_touches_the_training_split(poisoned_training_split, digits):
    h = poisoned_training_split
    method = REGISTRY.create(KEY, **SMALL)
    ctx = h.context(0, method)
    torch.manual_seed(0)
    out = method.apply(ctx)   # would raise FloatingPointError had it trained on the NaN split
    assert method.synthesis.images.shape == (64, 1, 8, 8)   # the task's input shape
    x = digits.x_test[:8]
    assert torch.isfinite(out.model(x)).all()
    stages = [(e.stage, e.samples) for e in ctx.ledger.entries if not e.upstream]
    assert stages == [("synthesis", 64 * 30), ("kd_synthetic", 64 * 2 * ctx.epochs_scratch)]
    assert out.extra["synthesis_objective_last"] < out.extra["synthesis_objective_first"]


@pytest.mark.slow
def test_row_is_labelled_data_free_with_synthesis_cost(smoke_harness):
    h = smoke_harness
    h.cfg.overrides[KEY] = SMALL
    try:
        spec = plan(h.cfg.__class__(task="digits", budget="smoke", methods=[KEY], seeds=[0], overrides={KEY: SMALL}),
                    h.task, h.dataset_label)[0]
        assert spec.config["data_free"] is True
        row = h.run(spec)
    finally:
        h.cfg.overrides.pop(KEY)
    assert row.data_free and row.selection_rule.startswith("last epoch")
    stages = {s["stage"]: s for s in json.loads(row.ledger_json)}
    assert set(stages) == {"teacher", "synthesis", "kd_synthetic"} and stages["teacher"]["upstream"]
    assert row.train_seconds_total == pytest.approx(stages["synthesis"]["seconds"] + stages["kd_synthetic"]["seconds"])
    assert row.upstream_train_seconds == pytest.approx(stages["teacher"]["seconds"])   # (tiny config: accuracy not asserted)
