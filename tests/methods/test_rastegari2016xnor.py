"""XNOR-Net (Rastegari et al. 2016): scaling factors, block order, and the packed XNOR-popcount path."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcbench.benchmarks import archs
from mcbench.methods.binarization import _xnor_kernel
from mcbench.methods.binarization import rastegari2016xnor as X
from mcbench.methods.registry import REGISTRY


def _cnn(widths=(8, 16, 32)):
    return archs.build(archs.ArchSpec("cnn", widths), 1, 10, (12, 12))


def test_registered():
    assert REGISTRY.get("rastegari2016xnor").family == "binarization"


def test_paper_block_order_and_full_precision_first_and_last_layers():
    m = X.xnor_model(_cnn(), "xnor")
    assert type(m.stage1[0]) is nn.Conv2d and type(m.fc) is nn.Linear            # first/last kept
    for name in ("stage2", "stage3"):                                              # BNorm -> BinActiv+BinConv
        seq = getattr(m, name)
        assert [type(c) for c in seq] == [nn.BatchNorm2d, X.XnorConv2d]
        assert seq[0].num_features == seq[1].in_channels and seq[1].binary_input
    bwn = X.xnor_model(_cnn(), "bwn")
    assert [type(c) for c in bwn.stage2] == [X.XnorConv2d, nn.BatchNorm2d, nn.ReLU]
    assert not bwn.stage2[0].binary_input


def test_weights_are_alpha_times_sign_with_alpha_the_mean_absolute_value():
    torch.manual_seed(0)
    layer = X.xnor_model(_cnn(), "bwn").stage2[0]
    w = layer.weight.detach()
    want = w.abs().mean(dim=(1, 2, 3)).view(-1, 1, 1, 1) * torch.where(w >= 0, 1.0, -1.0)
    assert torch.allclose(layer.scaled_weight(), want)
    # alpha = ||W||_1 / n minimises ||W - alpha B||^2 for B = sign(W): a nearby alpha does worse
    best = ((w - want) ** 2).sum()
    assert best < ((w - 1.1 * want) ** 2).sum() and best < ((w - 0.9 * want) ** 2).sum()


def test_input_scale_k_is_the_box_filtered_mean_absolute_input():
    layer = X.xnor_model(_cnn(), "xnor").stage2[1]
    x = torch.randn(2, 8, 6, 6)
    k = layer.input_scale(x)
    a = x.abs().mean(dim=1)
    # interior position (2, 3): mean of A over the 3x3 window; corner (0, 0): zero-padded window / 9
    assert k[1, 0, 2, 3].item() == pytest.approx(a[1, 1:4, 2:5].mean().item(), rel=1e-5)
    assert k[0, 0, 0, 0].item() == pytest.approx(a[0, 0:2, 0:2].sum().item() / 9, rel=1e-5)


def test_xnor_forward_is_sign_conv_times_alpha_and_k():
    torch.manual_seed(0)
    layer = X.xnor_model(_cnn(), "xnor").stage2[1]
    x = torch.randn(3, 8, 6, 6)
    w = layer.weight.detach()
    alpha = w.abs().mean(dim=(1, 2, 3)).view(1, -1, 1, 1)
    want = F.conv2d(torch.where(x >= 0, 1.0, -1.0), torch.where(w >= 0, 1.0, -1.0), padding=1) * alpha * layer.input_scale(x)
    assert torch.allclose(layer(x), want, atol=1e-5)


def test_gradients_reach_latent_weights_through_alpha_and_sign():
    layer = X.xnor_model(_cnn(), "xnor").stage2[1]
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    layer(x).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.slow   # the first call compiles the C++ kernel (about a minute on 2 cores; cached afterwards)
@pytest.mark.parametrize("channels,size", [(8, 6), (70, 5), (130, 4)])
def test_packed_xnor_popcount_path_equals_float_binary_forward(channels, size):
    if _xnor_kernel.load() is None:
        pytest.skip(f"XNOR kernel could not be built here: {_xnor_kernel.load_error()}")
    torch.manual_seed(0)
    model = X.xnor_model(archs.build(archs.ArchSpec("cnn", (4, channels, 24)), 1, 10, (2 * size, 2 * size)), "xnor")
    x = torch.randn(5, 1, 2 * size, 2 * size)
    model.train()
    model(x)     # BN statistics move away from their initial values
    sim, real = X.deployed_model(model, use_kernel=False), X.deployed_model(model, use_kernel=True)
    assert any(getattr(m, "runs_packed_kernel", False) for m in real.modules())
    with torch.no_grad():
        a, b = sim(x), real(x)
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-6 * a.abs().max().item())
        for _, layer in X.binary_layers(real):   # layer by layer, word boundaries included (70, 130 channels)
            xin = torch.randn(3, layer.in_channels, size, size)
            xin[0, :, 0, 0] = 0.0                      # exact zeros are +1, as in the float sign
            sim_layer = X.binary_layers(sim)[[n for n, _ in X.binary_layers(real)].index(_)][1]
            assert torch.equal(layer(xin), sim_layer(xin))


def test_encoded_sign_bits_round_trip_and_are_one_bit():
    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    out = REGISTRY.create("rastegari2016xnor", packed_kernel=False).apply(_tiny_context(Walk(out=None)))
    blob = out.encoded.encode(out.model)
    dec = out.encoded.decode(blob)
    for k, v in out.model.state_dict().items():
        assert torch.equal(dec.state_dict()[k], v), k
    from mcbench.methods.encoding import container
    sizes = container.payload_sizes(blob)
    w = out.model.stage2[1].weight
    assert sizes["stage2.1.weight"] <= w.numel() / 8 + 1 + 4 + 8   # 1 bit per weight + 2-entry codebook
    assert out.extra["full_precision_layers"] == ["stage1.0", "fc"]
    assert not out.compute_real and out.storage_real and 1 < out.bits_per_weight < 32
