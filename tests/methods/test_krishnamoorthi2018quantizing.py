"""Krishnamoorthi (2018): the whitepaper's quantizers, their error bounds, granularity and the encoded codes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mcbench.methods.encoding import container
from mcbench.methods.quantization import _uniform as U
from mcbench.methods.registry import REGISTRY

SCHEMES = [U.Scheme(b, sym, pc) for b in (2, 4, 8) for sym in (False, True) for pc in (False, True)]


def test_registered():
    assert REGISTRY.get("krishnamoorthi2018quantizing").family == "quantization"


@pytest.mark.parametrize("s", SCHEMES, ids=lambda s: s.name.replace(" ", "_"))
def test_error_bound_and_levels_per_scheme(s):
    torch.manual_seed(0)
    w = torch.randn(6, 3, 3, 3) * torch.tensor([0.01, 0.1, 1, 3, 0.5, 2]).view(-1, 1, 1, 1) + 0.2
    scale, zero = U.qparams(w, s)
    wq = U.quantize(w, s)
    # every value inside the representable range is within half a step of its quantized value
    assert ((w - wq).abs() <= scale / 2 * (1 + 1e-5)).all()
    # at most 2**bits levels per quantization group, zero representable exactly
    groups = wq.flatten(1) if s.per_channel else wq.flatten()[None]
    assert max(len(torch.unique(g)) for g in groups) <= 2 ** s.bits
    assert torch.equal(U.dequantize(zero, scale, zero), torch.zeros_like(scale))
    # codes lie in the unsigned range and zero points are integers
    q = U.codes(w, scale, zero, s)
    assert q.min() >= 0 and q.max() <= 2 ** s.bits - 1 and torch.equal(zero, zero.round())
    if s.symmetric:
        assert torch.all(zero == 2 ** (s.bits - 1))


def test_asymmetric_range_spans_min_and_max_with_zero_exact():
    w = torch.tensor([[-0.3, 0.0, 0.9, 0.41]])
    s = U.Scheme(8, symmetric=False, per_channel=False)
    scale, _ = U.qparams(w, s)
    wq = U.quantize(w, s)
    assert scale.item() == pytest.approx(1.2 / 255)
    assert abs(wq[0, 0] + 0.3) <= scale / 2 and abs(wq[0, 2] - 0.9) <= scale / 2 and wq[0, 1] == 0.0


def test_per_channel_beats_per_tensor_on_unequal_channel_ranges():
    torch.manual_seed(0)
    layer = nn.Conv2d(8, 4, 3, bias=False)
    with torch.no_grad():   # output channel ranges differ by 1000x
        layer.weight.mul_(torch.tensor([0.001, 0.01, 0.1, 1.0]).view(-1, 1, 1, 1))
    x = torch.randn(16, 8, 10, 10)
    ref = layer(x)
    errs = {}
    for pc in (False, True):
        q = nn.Conv2d(8, 4, 3, bias=False)
        q.weight.data = U.quantize(layer.weight.data, U.Scheme(4, False, pc))
        with torch.no_grad():   # error relative to each channel's output power
            errs[pc] = ((q(x) - ref) ** 2).mean(dim=(0, 2, 3)) / (ref ** 2).mean(dim=(0, 2, 3))
    # per-tensor collapses the small channels to (almost) nothing; per-channel keeps each channel's shape
    assert errs[True].mean() < 0.1 * errs[False].mean()
    assert (errs[True] <= errs[False] * (1 + 1e-4)).all()


def test_fake_quant_is_straight_through():
    w = torch.randn(4, 5, requires_grad=True)
    s = U.Scheme(3, False, True)
    y = U.fake_quant(w, s)
    assert torch.equal(y.detach(), U.quantize(w.detach(), s))
    y.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_act_quant_observes_in_training_only_and_limits_levels():
    a = U.ActQuant(bits=4)
    a.train()
    a(torch.linspace(-1, 3, 100))
    lo, hi = a.lo.item(), a.hi.item()
    a.eval()
    out = a(torch.linspace(-5, 10, 1000))
    assert (a.lo.item(), a.hi.item()) == (lo, hi)            # eval never moves the range
    step = (hi - lo) / 15
    assert len(torch.unique(out)) <= 16 and out.min() >= lo - step / 2 and out.max() <= hi + step / 2


@pytest.mark.parametrize("bits,per_channel", [(4, True), (2, False), (8, True)])
def test_encoded_codes_round_trip_bit_exactly_and_are_packed(bits, per_channel):
    torch.manual_seed(0)
    build = lambda: nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 36, 10))  # noqa: E731
    s = U.Scheme(bits, False, per_channel)
    model = U.snap_weights(build(), s)
    enc = U.encoded_format(build, s)
    blob = enc.encode(model)
    decoded = enc.decode(blob)
    for k, v in model.state_dict().items():
        assert torch.equal(decoded.state_dict()[k], v), k
    sizes = container.payload_sizes(blob)
    codes = sizes["3.wcodes"]            # 5760 weights at `bits` bits + a codebook of at most 2**bits floats
    assert codes <= 5760 * bits / 8 + 4 + 4 * 2 ** bits
    assert sizes["3.wscale"] == 4 * (10 if per_channel else 1)
    with pytest.raises(ValueError, match="not on the"):
        enc.encode(build())             # unquantized float weights are refused, not silently rounded


def test_apply_gives_quantized_row_and_ptq_controls(tmp_path):
    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    method = REGISTRY.create("krishnamoorthi2018quantizing", weight_bits=3, ptq_controls="grid")
    walk = Walk(out=None)
    out = method.apply(_tiny_context(walk))
    assert walk.trained == 1 and set(out.controls) == {
        "ptq-per-tensor-asym", "ptq-per-channel-asym", "ptq-per-tensor-sym", "ptq-per-channel-sym"}
    for c in [out, *out.controls.values()]:
        for _, layer in U.quant_layers(c.model):
            assert max(len(torch.unique(r)) for r in layer.weight.flatten(1)) <= 8
        assert c.storage_real and not c.compute_real and c.bits_per_weight == 3
        x = torch.randn(4, 1, 8, 8)
        assert torch.equal(c.encoded.decode(c.encoded.encode(c.model))(x), c.model(x))
    pt = out.controls["ptq-per-tensor-asym"].model
    assert all(len(torch.unique(layer.weight)) <= 8 for _, layer in U.quant_layers(pt))
