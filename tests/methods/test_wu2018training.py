"""WAGE (Wu et al. 2018): weights, activations, gradients and errors stay on their integer grids."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mcbench.benchmarks import archs
from mcbench.methods.protocols import ModelOutput
from mcbench.methods.quantization import wu2018training as W
from mcbench.methods.registry import REGISTRY


def _on_grid(x: torch.Tensor, bits: int) -> bool:
    """x = sigma(bits) * n with n an integer of |n| <= 2^(bits-1) - 1 (a signed bits-bit integer)."""
    n = x / W.sigma(bits)
    return bool(torch.equal(n, torch.round(n)) and n.abs().max() <= 2 ** (bits - 1) - 1)


def test_registered():
    assert REGISTRY.get("wu2018training").family == "quantization"


def test_linear_mapping_by_hand():
    x = torch.tensor([0.3, -0.74, 0.76, 0.1, -0.26])
    assert W.q(x, 2).tolist() == [0.5, -0.5, 0.5, 0.0, -0.5]           # sigma(2) = 1/2, clipped at +-1/2
    y = W.q(torch.tensor([0.5, -2.0, 0.0039, 0.0041]), 8)
    assert y.tolist() == [64 / 128, -127 / 128, 0.0, 1 / 128]
    torch.manual_seed(0)
    assert W.q(torch.randn(10_000), 2).unique().tolist() == [-0.5, 0.0, 0.5]   # ternary: three levels
    levels = W.q(torch.randn(10_000), 8)
    assert len(levels.unique()) == 255 and _on_grid(levels, 8)


@pytest.mark.parametrize("fan_in,limit,alpha", [(288, 0.75, 4.0), (576, 0.75, 8.0), (9, math.sqrt(6 / 9), 1.0)])
def test_initialisation_limit_and_layer_scale_by_hand(fan_in, limit, alpha):
    # L0 = sqrt(6/288) = 0.144, L_min = 1.5 * 0.5 = 0.75, L_min/L0 = 5.2 -> Shift = 4
    # L0 = sqrt(6/576) = 0.102, ratio 7.3 -> 8;  L0 = sqrt(6/9) = 0.816 > L_min, ratio 0.92 -> Shift 1
    got_limit, got_alpha = W.init_limit(fan_in, weight_bits=2)
    assert got_limit == pytest.approx(limit) and got_alpha == alpha


def test_error_quantization_by_hand():
    e = torch.tensor([0.3, -0.05, 0.001])
    # Shift(0.3) = 2^round(-1.74) = 1/4 -> e_s = [1.2, -0.2, 0.004] -> Q(., 8): [127, -26, 1] / 128
    assert W.quantize_error(e, 8).tolist() == [127 / 128, -26 / 128, 1 / 128]
    assert torch.equal(W.quantize_error(torch.zeros(3), 8), torch.zeros(3))


def test_gradient_update_is_an_unbiased_stochastic_rounding_of_the_scaled_gradient():
    g = torch.tensor([0.3, -0.1, 0.0])
    # Shift(0.3) = 1/4, eta = 8 -> g_s = [9.6, -3.2, 0]; dW / sigma(8) in {9, 10}, {-4, -3}, {0}
    gen = torch.Generator().manual_seed(0)
    draws = W.quantize_update(g.expand(20_000, 3), 8, 8.0, gen) / W.sigma(8)   # same max|g|: 20000 draws
    assert torch.equal(draws, torch.round(draws))
    assert set(draws[:, 0].unique().tolist()) == {9.0, 10.0}
    assert set(draws[:, 1].unique().tolist()) == {-4.0, -3.0}
    assert draws[:, 2].abs().max() == 0
    mean = draws.mean(dim=0)
    assert mean[0].item() == pytest.approx(9.6, abs=0.02) and mean[1].item() == pytest.approx(-3.2, abs=0.02)


def _wage_cnn(**overrides):
    cfg = W.wu2018training(**overrides).config
    torch.manual_seed(0)
    base = archs.build(archs.ArchSpec("cnn", (4, 8)), 1, 4, (8, 8))
    return W.wage_model(base, cfg, init=True), cfg


def test_wage_network_has_no_batch_norm_and_no_biases():
    model, _ = _wage_cnn()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert all(m.bias is None for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    scales = [m.alpha for m in model.modules() if isinstance(m, W.Scale)]
    assert scales == [W.init_limit(f, 2)[1] for f in (9, 36, 8)]          # conv 1x3x3, conv 4x3x3, fc 8


def test_integers_stay_within_their_bit_widths_during_training():
    model, cfg = _wage_cnn()
    acts, errors = [], []
    for m in model.modules():
        if isinstance(m, W.ActQuant):
            m.register_forward_hook(lambda _m, _i, out: acts.append(out.detach()))
            m.register_full_backward_hook(lambda _m, gin, gout: errors.append((gin[0], gout[0])))
    opt = W.WageSGD(model.parameters(), lr=cfg.lr, grad_bits=cfg.grad_bits)
    stored = [p for p in model.parameters()]
    assert all(_on_grid(p.detach(), cfg.grad_bits) for p in stored)      # initialised on the k_G grid
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 4, (16,), generator=g)
        before = [p.detach().clone() for p in stored]
        loss = W.sse_loss(ModelOutput(model(x), {}), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        for p, b in zip(stored, before):
            assert _on_grid(p.detach(), cfg.grad_bits)                     # W: k_G-bit integers
            assert _on_grid((b - p.detach()), 16)                           # dW: integer multiples of sigma(k_G)
            assert torch.equal((b - p.detach()) / W.sigma(cfg.grad_bits),
                               torch.round((b - p.detach()) / W.sigma(cfg.grad_bits)))
    for name, m in model.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            assert set(m.weight.detach().unique().tolist()) <= {-0.5, 0.0, 0.5}   # W_q: ternary
    assert acts and all(_on_grid(a, cfg.act_bits) and a.min() >= 0 for a in acts)   # A: 8-bit after ReLU
    assert errors
    for e_q, e in errors:                                                  # E: Q_E of the incoming error
        assert _on_grid(e_q, cfg.error_bits)
        assert torch.equal(e_q, W.quantize_error(e, cfg.error_bits))


def test_apply_trains_from_scratch_and_deploys_ternary_weights_that_encode():
    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    walk = Walk(out=None)
    out = REGISTRY.create("wu2018training").apply(_tiny_context(walk))
    assert walk.trained == 1
    layers = [m for m in out.model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 3
    for m in layers:
        assert set(m.weight.unique().tolist()) <= {-0.5, 0.0, 0.5}
    x = torch.randn(3, 1, 8, 8)
    data = out.encoded.encode(out.model)
    assert torch.equal(out.encoded.decode(data)(x), out.model(x))
    from mcbench.methods.encoding import container
    for name, size in container.payload_sizes(data).items():               # 2-bit codes + a <=4-entry codebook
        n = dict(out.model.named_parameters())[name].numel()
        assert size <= math.ceil(n * 2 / 8) + 4 * 4 + 4, name
    assert out.bits_per_weight == 2.0 and out.storage_real and not out.compute_real
    assert torch.isfinite(F.softmax(out.model(x), dim=1)).all()
