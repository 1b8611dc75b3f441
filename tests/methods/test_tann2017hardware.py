"""Tann et al. (2017): power-of-two weights, dynamic fixed-point activations, shifts counted, incremental stages."""
from __future__ import annotations

import math

import pytest
import torch

from mcbench.methods.quantization import _uniform as U
from mcbench.methods.quantization import tann2017hardware as T
from mcbench.methods.registry import REGISTRY


def _is_power_of_two_or_zero(w: torch.Tensor) -> bool:
    mantissa, _ = torch.frexp(w[w != 0].abs())
    return bool((mantissa == 0.5).all())


def test_registered():
    assert REGISTRY.get("tann2017hardware").family == "quantization"


@pytest.mark.parametrize("bits", [2, 3, 4, 6])
def test_weights_become_exact_powers_of_two_within_the_exponent_range(bits):
    torch.manual_seed(0)
    w = torch.randn(32, 16) * 0.3
    q = T.power_of_two(w, bits)
    assert _is_power_of_two_or_zero(q)
    assert torch.equal(torch.sign(q[q != 0]), torch.sign(w[q != 0]))       # the sign is kept
    exps = torch.log2(q[q != 0].abs())
    e_min, e_max = T.exponent_range(w, bits)
    assert exps.min() >= e_min and exps.max() <= e_max
    assert len(torch.unique(q)) <= 2 ** bits                                # zero, +/- 2**(k-1)-1 exponents
    big = w.abs() >= 2.0 ** e_min                                           # representable magnitudes:
    ratio = (q[big] / w[big]).abs()                                         # within a factor sqrt(2)
    assert ratio.max() <= math.sqrt(2) * (1 + 1e-6) and ratio.min() >= 1 / math.sqrt(2) * (1 - 1e-6)


def test_fixed_point_activations_are_multiples_of_two_to_minus_frac():
    a = T.FixedPointAct(bits=8)
    a.train()
    a(torch.tensor([0.0, 5.3, -2.0]))           # max|x| 5.3 -> 3 integer bits -> 4 fractional bits
    a.eval()
    assert a.frac == 4
    y = a(torch.randn(1000) * 4)
    assert torch.equal(y * 16, torch.round(y * 16)) and y.max() <= 127 / 16 and y.min() >= -8


def test_stage_groups_cover_layers_first_to_last():
    assert T.stage_groups(5, 2) == [[0, 1], [2, 3, 4]] or T.stage_groups(5, 2) == [[0, 1, 2], [3, 4]]
    assert sum(T.stage_groups(7, 3), []) == list(range(7))
    assert T.stage_groups(2, 5) == [[0], [1]]


def test_apply_trains_incrementally_and_counts_shifts_not_multiplications():
    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    walk = Walk(out=None)
    out = REGISTRY.create("tann2017hardware", weight_bits=4, stages=3).apply(_tiny_context(walk))
    assert walk.trained == 3                                # one fine-tuning run per incremental stage
    for _, layer in U.quant_layers(out.model):
        assert _is_power_of_two_or_zero(layer.weight.detach())
        assert not torch.nn.utils.parametrize.is_parametrized(layer)
    x = torch.randn(4, 1, 8, 8)
    ops = out.count_ops(out.model, x)
    seen = _layer_inputs(out.model, x)
    nonzero = sum(T.nonzero_macs(l, xi)["macs_nonzero_weights"] for l, xi in seen)
    assert ops["multiplications"] == 0 and ops["shifts"] == ops["additions"] == nonzero > 0
    with torch.no_grad():          # a zero weight is a skipped shift
        layer = U.quant_layers(out.model)[-1][1]
        before, row_nonzero = out.count_ops(out.model, x)["shifts"], int((layer.weight[0] != 0).sum())
        layer.weight[0].zero_()
        assert row_nonzero > 0 and out.count_ops(out.model, x)["shifts"] == before - 4 * row_nonzero
    dec = out.encoded.decode(out.encoded.encode(out.model))
    assert torch.equal(dec(x), out.model(x))


def _layer_inputs(model, x):
    seen = []
    hooks = [l.register_forward_hook(lambda m, i, o: seen.append((m, i[0]))) for _, l in U.quant_layers(model)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen
