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


def test_apply_ends_with_at_most_three_distinct_values_per_layer():
    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    out = REGISTRY.create("achterhold2018variational", train_size=200).apply(_tiny_context(Walk(out=None)))
    layers = [m for m in out.model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert layers and all(len(torch.unique(m.weight)) <= 3 for m in layers)
    assert out.extra["distinct_values_per_layer_max"] <= 3
    dec = out.encoded.decode(out.encoded.encode(out.model))
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(dec(x), out.model(x))
