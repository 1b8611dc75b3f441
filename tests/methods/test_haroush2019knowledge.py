"""haroush2019knowledge: BN-statistics synthesis (Gaussian KL per channel) calibrates int8 PTQ without data."""
from __future__ import annotations

import math

import pytest
import torch

from mcbench.benchmarks.archs import ArchSpec, build
from mcbench.benchmarks.train import TrainData, train
from mcbench.benchmarks.tasks import Recipe
from mcbench.methods.distillation.haroush2019knowledge import gaussian_kl, synthesize_bns
from mcbench.methods.registry import REGISTRY

KEY = "haroush2019knowledge"


def test_gaussian_kl_matches_hand_computation():
    # KL(N(1, 4) || N(0, 1)) = log(1/2) + (4 + 1) / 2 - 1/2 = 2 - log 2 ; KL of equal Gaussians = 0
    value = gaussian_kl(torch.tensor([1.0]), torch.tensor([4.0]), torch.tensor([0.0]), torch.tensor([1.0]), eps=0.0)
    assert value.item() == pytest.approx(2 - math.log(2), rel=1e-6)
    same = gaussian_kl(torch.tensor([0.3, -1.0]), torch.tensor([2.0, 0.5]), torch.tensor([0.3, -1.0]),
                       torch.tensor([2.0, 0.5]))
    assert same.item() == pytest.approx(0.0, abs=1e-6)


def test_synthesis_lowers_the_bn_divergence_and_has_the_task_shape(digits):
    torch.manual_seed(0)
    model = build(ArchSpec("cnn", (8, 16)), 1, 10, (8, 8))
    train(model, TrainData(digits.x_train, digits.y_train, digits.x_val, digits.y_val),
          Recipe(epochs_scratch=2, epochs_finetune=1, batch_size=64, lr=1e-2), epochs=2, seed=0)
    x, first, last, _ = synthesize_bns(model, 40, (1, 8, 8), iterations=60, batch_size=20, lr=0.05,
                                       generator=torch.Generator().manual_seed(0))
    assert x.shape == (40, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    assert last < 0.5 * first


@pytest.fixture
def poisoned_training_split(smoke_harness):
    smoke_harness.trained("baseline", 0)
    real = smoke_harness.data
    smoke_harness.data = TrainData(torch.full_like(real.x_train, float("nan")), real.y_train, real.x_val, real.y_val)
    yield smoke_harness
    smoke_harness.data = real


@pytest.mark.slow
def test_int8_model_calibrated_without_real_data(poisoned_training_split, digits):
    method = REGISTRY.create(KEY, num_images=64, iterations=20, batch_size=32)
    ctx = poisoned_training_split.context(0, method)
    assert ctx.data_free
    out = method.apply(ctx)
    assert out.quant_engine and out.real and out.bits_per_weight == 8.0
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in out.model.modules())
    assert out.extra["bns_loss_last"] < out.extra["bns_loss_first"]
    assert out.model(digits.x_test[:8]).shape == (8, 10)
