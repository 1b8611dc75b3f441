"""The acceleration family base: build(ctx) trains from scratch, transform(model, ctx) fine-tunes the baseline."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mcbench.methods.protocols import AccelerationMethod, MethodContext, TrainReport


def _ctx(calls: list) -> MethodContext:
    baseline = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))

    def train_fn(model, *, epochs, **kw):
        calls.append(epochs)
        return TrainReport(best_epoch=0, val_top1_acc_pct=0.0, epochs_run=epochs)

    return MethodContext(num_classes=4, in_chans=1, input_size=(4, 4), epochs_scratch=5, epochs_finetune=2,
                         train_fn=train_fn, build_student=lambda: baseline, build_baseline=lambda: baseline,
                         load_baseline=lambda: baseline, load_teacher=lambda: baseline,
                         calibration_batches=lambda: [torch.randn(2, 1, 4, 4)])


class LowRank(AccelerationMethod):
    """Replace each Linear by two thin ones from a truncated SVD of its trained weight."""

    note = "low-rank factorised linear layers (standard ops)"

    def transform(self, model, ctx):
        layers = []
        for m in model:
            if isinstance(m, nn.Linear):
                u, s, vh = torch.linalg.svd(m.weight.detach(), full_matrices=False)
                r = min(m.weight.shape)  # full rank: the same function, exactly
                a, b = nn.Linear(m.in_features, r, bias=False), nn.Linear(r, m.out_features)
                a.weight.data, b.weight.data, b.bias.data = vh[:r], u[:, :r] * s[:r], m.bias.detach().clone()
                layers += [a, b]
            else:
                layers.append(m)
        return nn.Sequential(*layers)


class Built(AccelerationMethod):
    real = True
    note = "built from the operator"

    def build(self, ctx):
        return nn.Sequential(nn.Flatten(), nn.Linear(16, ctx.num_classes))


def test_transform_fine_tunes_the_trained_baseline_and_keeps_its_function():
    calls = []
    ctx = _ctx(calls)
    x = torch.randn(3, 1, 4, 4)
    before = ctx.load_baseline()(x)
    out = LowRank().apply(ctx)
    assert calls == [2]  # the fine-tuning budget
    assert torch.allclose(out.model(x), before, atol=1e-5)
    assert out.real is False and "low-rank" in out.note


def test_build_trains_from_scratch():
    calls = []
    out = Built().apply(_ctx(calls))
    assert calls == [5] and out.real is True and out.model(torch.randn(2, 1, 4, 4)).shape == (2, 4)


def test_a_method_that_implements_neither_says_so():
    with pytest.raises(NotImplementedError, match="build\\(ctx\\) or transform"):
        AccelerationMethod().apply(_ctx([]))
