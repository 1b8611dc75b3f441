"""AdderNet (Chen et al. 2019): the negative L1 distance forward and the paper's gradients (Eq. 2, 5, 7, 11)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mcbench.methods.acceleration import chen2019addernet as A
from mcbench.methods.protocols import StepInfo
from mcbench.methods.registry import REGISTRY


def _reference(x, w, padding):
    """Eq. 2 by loops over output positions (zero padding: |0 - F| is part of the distance)."""
    xp = F.pad(x, (padding,) * 4)
    b, _, h, wd = xp.shape
    t, _, k, _ = w.shape
    out = torch.zeros(b, t, h - k + 1, wd - k + 1, dtype=torch.float64)
    for i in range(h - k + 1):
        for j in range(wd - k + 1):
            patch = xp[:, None, :, i:i + k, j:j + k]                      # (B, 1, C, k, k)
            out[:, :, i, j] = -(patch - w[None]).abs().sum(dim=(2, 3, 4))
    return out


def test_registered():
    assert REGISTRY.get("chen2019addernet").family == "acceleration"


@pytest.mark.parametrize("padding", [0, 1])
def test_adder_layer_is_the_negative_l1_distance(padding):
    torch.manual_seed(0)
    layer = A.Adder2d(3, 4, 3, padding=padding).double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    want = _reference(x, layer.weight.detach(), padding)
    with torch.no_grad():
        assert torch.allclose(layer(x), want, atol=1e-9)
    assert torch.allclose(layer(x), want, atol=1e-9)   # the training path (custom autograd) agrees


def test_gradients_follow_eq5_for_filters_and_eq7_for_inputs():
    torch.manual_seed(0)
    x_cols = (torch.randn(2, 3, 4, dtype=torch.float64) * 2).requires_grad_()
    w = (torch.randn(5, 4, dtype=torch.float64) * 2).requires_grad_()
    g = torch.randn(2, 3, 5, dtype=torch.float64)
    A.AdderFunction.apply(x_cols, w).backward(g)
    diff = x_cols.detach()[:, :, None, :] - w.detach()[None, None]       # X - F, (B, L, T, K)
    want_w = (g[..., None] * diff).sum(dim=(0, 1))                        # Eq. 5: full precision X - F
    want_x = (g[..., None] * (-diff).clamp(-1, 1)).sum(dim=2)             # Eq. 7: HT(F - X)
    assert torch.allclose(w.grad, want_w) and torch.allclose(x_cols.grad, want_x)
    # the exact gradient of -|X - F| is sign(X - F) for F: the paper's rule differs from it
    assert not torch.allclose(w.grad, (g[..., None] * diff.sign()).sum(dim=(0, 1)))
    assert (diff.abs() > 1).any()      # and clipping was exercised for the input gradient


def test_adaptive_learning_rate_normalises_each_layer_gradient():
    layer = A.Adder2d(2, 3, 3)
    layer.weight.grad = torch.randn_like(layer.weight) * 17.0
    model = torch.nn.Sequential(layer)
    A.adaptive_lr(0.1)(model, StepInfo(step=1, total_steps=1, epoch=0, lr=1e-3))
    assert layer.weight.grad.norm().item() == pytest.approx(0.1 * math.sqrt(layer.weight.numel()), rel=1e-5)


def test_every_convolution_but_the_first_becomes_an_adder_and_multiplications_vanish_there():
    from mcbench.benchmarks import archs
    model = A.adder_model(archs.build(archs.ArchSpec("cnn", (4, 8, 8)), 1, 10, (8, 8)))
    assert type(model.stage1[0]) is torch.nn.Conv2d
    assert isinstance(model.stage2[0], A.Adder2d) and isinstance(model.stage3[0], A.Adder2d)
    ops = A.tally(model, torch.randn(2, 1, 8, 8), A.adder_ops)
    first = 2 * 4 * 22 * 22              # batch x out channels x valid taps (padding counts no MAC: 22 per axis)
    fc = 2 * 8 * 10
    assert ops["multiplications"] == first + fc
    adder_macs = 2 * (8 * 4 * 4 * 4 * 9 + 8 * 8 * 2 * 2 * 9)
    assert ops["additions"] == first + fc + 2 * adder_macs


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_apply_trains_with_the_configured_optimizer_and_the_adaptive_rate(optimizer):
    from helpers import recording_context
    from mcbench.methods.protocols import TrainReport

    seen = {}

    def train_fn(model, *, epochs, hooks=None, optimizer=None, **_):
        seen["opt"] = optimizer([p for p in model.parameters()]) if optimizer is not None else None
        seen["hook"] = hooks.before_step
        return TrainReport(best_epoch=0, val_top1_acc_pct=40.0, epochs_run=epochs)

    ctx = recording_context(train_fn, widths=(4, 8, 8))
    REGISTRY.create("chen2019addernet", optimizer=optimizer, lr=0.05).apply(ctx)
    if optimizer == "adamw":
        assert seen["opt"] is None                     # the harness's own optimiser and rate
    else:
        group = seen["opt"].param_groups[0]
        assert isinstance(seen["opt"], torch.optim.SGD)
        assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.05, 0.9, 5e-4)
    assert seen["hook"] is not None                    # Eq. 11's per-layer scaling runs either way
