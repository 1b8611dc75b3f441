"""VNQ (Achterhold et al. 2018): the quantizing prior's KL approximation and at most three values per layer."""
from __future__ import annotations

import math

import pytest
import torch

from mcbench.methods.quantization import achterhold2018variational as V
from mcbench.methods.registry import REGISTRY


def test_registered():
    assert REGISTRY.get("achterhold2018variational").family == "quantization"


def test_kl_approximation_at_the_nearest_mode_matches_the_formula():
    r = torch.tensor(0.5)
    theta = torch.tensor([0.45, -0.1, 0.3])        # nearest modes: +r, 0, +r
    log_s2 = torch.tensor([-6.0, -7.0, -5.0])
    mu = torch.tensor([0.5, 0.0, 0.5])
    want = 0.0
    for t, s, m in zip(theta.tolist(), log_s2.tolist(), mu.tolist()):
        la = s - math.log((t - m) ** 2 + 1e-8)
        want += 0.63576 / (1 + math.exp(-(1.87320 + 1.48695 * la))) - 0.5 * math.log1p(math.exp(-la)) - 0.63576
    assert V.neg_kl_nearest_mode(theta, log_s2, r).item() == pytest.approx(want, rel=1e-5)


def test_kl_pulls_weights_towards_their_nearest_level():
    r = torch.tensor(0.5)
    theta = torch.tensor([0.4, -0.45, 0.08], requires_grad=True)
    V.neg_kl_nearest_mode(theta, torch.full((3,), -8.0), r).backward()
    # ascending -KL moves theta towards +r, -r and 0 respectively
    assert theta.grad[0] > 0 and theta.grad[1] < 0 and theta.grad[2] < 0


def test_snap_prunes_by_dropout_rate_and_leaves_at_most_three_values():
    torch.manual_seed(0)
    layer = V.VariationalLayer(torch.nn.Linear(20, 6), init_log_sigma2=-10.0)
    with torch.no_grad():
        layer.log_sigma2[0, :5] = 5.0                # posterior dropout rate far above the threshold
    q = layer.snapped(log_alpha_prune=2.0).weight
    assert len(torch.unique(q)) <= 3
    assert (q[0, :5] == 0).all()
    r = layer.r.item()
    assert all(v == 0.0 or abs(v - r) < 1e-6 for v in torch.unique(q.abs()).tolist())


@pytest.mark.parametrize("first", [False, True])
def test_apply_ends_with_at_most_three_distinct_values_per_layer(first):
    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    method = REGISTRY.create("achterhold2018variational", train_size=200, quantize_first_layer=first)
    out = method.apply(_tiny_context(Walk(out=None)))
    layers = [(n, m) for n, m in out.model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    ternary = layers if first else layers[1:]
    assert ternary and all(len(torch.unique(m.weight)) <= 3 for _, m in ternary)
    assert out.extra["distinct_values_per_layer_max"] <= 3
    n_ternary = sum(m.weight.numel() for _, m in ternary)
    n_all = sum(p.numel() for p in out.model.parameters())
    assert out.bits_per_weight == pytest.approx((2.0 * n_ternary + 32.0 * (n_all - n_ternary)) / n_all)
    if first:
        assert out.extra["full_precision_layers"] == []
    else:   # the first layer keeps its trained float weights (more than three values) and is named
        assert out.extra["full_precision_layers"] == [layers[0][0]]
        assert len(torch.unique(layers[0][1].weight)) > 3
    dec = out.encoded.decode(out.encoded.encode(out.model))
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(dec(x), out.model(x))

