"""BNN (Courbariaux et al. 2016): the packed XNOR-popcount path of the deployed model equals its float
+/-1 simulation, on convolutions and fully connected layers, word boundaries included."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mcbench.benchmarks import archs
from mcbench.methods.binarization import _xnor_kernel
from mcbench.methods.binarization import courbariaux2016binarized as B


def _trained_like(model: nn.Module, x: torch.Tensor) -> nn.Module:
    model.train()
    model(x)          # BN statistics move away from their initial values
    return model


def test_kernel_can_run_only_what_the_kernel_computes():
    conv = B._swap(nn.Conv2d(8, 8, 3, padding=1), first=False)
    assert B.kernel_can_run(conv)
    assert not B.kernel_can_run(B._swap(nn.Conv2d(8, 8, 3, padding=1), first=True))          # real-valued input
    assert not B.kernel_can_run(B._swap(nn.Conv2d(8, 8, 3, padding=1, groups=2), first=False))
    assert not B.kernel_can_run(B._swap(nn.Conv2d(8, 8, 3, padding=2, dilation=2), first=False))
    assert B.kernel_can_run(B._swap(nn.Linear(8, 4), first=False))


@pytest.mark.slow   # the first call compiles the C++ kernel (about a minute on 2 cores; cached afterwards)
@pytest.mark.parametrize("arch,widths", [("cnn", (4, 70, 24)), ("mlp", (130, 65))])
def test_packed_path_equals_float_binary_forward(arch, widths):
    if _xnor_kernel.load() is None:
        pytest.skip(f"XNOR kernel could not be built here: {_xnor_kernel.load_error()}")
    torch.manual_seed(0)
    x = torch.randn(5, 1, 10, 10)
    model = _trained_like(B.binarize_model(archs.build(archs.ArchSpec(arch, widths), 1, 10, (10, 10))), x)
    sim, real = B.deployed_model(model, use_kernel=False), B.deployed_model(model, use_kernel=True)
    packed = [n for n, m in real.named_modules() if getattr(m, "use_kernel", False)]
    binary = [n for n, m in real.named_modules() if isinstance(m, (B.BinaryConv2d, B.BinaryLinear))]
    assert packed == binary[1:]          # every binary-input layer runs packed; the first layer does not
    with torch.no_grad():
        a, b = sim(x), real(x)
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-6 * a.abs().max().item())
        for name in packed:                   # layer by layer, exact: +/-1 dot products are integers
            layer, twin = real.get_submodule(name), sim.get_submodule(name)
            shape = (3, layer.in_channels, 6, 6) if isinstance(layer, nn.Conv2d) else (3, layer.in_features)
            xin = torch.randn(shape)
            xin.view(3, -1)[0, :5] = 0.0      # exact zeros are +1, as in the float sign
            assert torch.equal(layer(xin), twin(xin))
    with torch.enable_grad():                 # training mode never takes the kernel (it has no gradient)
        assert real(x.requires_grad_()).requires_grad


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_apply_trains_from_scratch_at_the_configured_learning_rate_scale(scale):
    from helpers import recording_context
    from mcbench.methods.protocols import TrainReport
    from mcbench.methods.registry import REGISTRY

    calls = []

    def train_fn(model, *, epochs, hooks=None, lr_scale=1.0, **_):
        calls.append((epochs, lr_scale, [type(m).__name__ for m in model.modules()]))
        return TrainReport(best_epoch=0, val_top1_acc_pct=50.0, epochs_run=epochs)

    ctx = recording_context(train_fn, epochs_scratch=2)
    out = REGISTRY.create("courbariaux2016binarized", lr_scale=scale, packed_kernel=False).apply(ctx)
    (epochs, lr_scale, types), = calls
    assert (epochs, lr_scale) == (2, scale)
    assert "BinaryConv2d" in types and "Conv2d" not in types        # the binarized net is what trains
    assert out.train_report.val_top1_acc_pct == 50.0 and out.bits_per_weight == 1.0


def test_packed_kernel_serves_only_cpu_inference():
    """The C++ kernel reads host memory: given a tensor on another device (a CUDA row's model; here the meta
    device stands in) the layer runs its float +/-1 simulation, and the kernel call itself refuses; it
    segfaulted on CUDA tensors before this check."""
    layer = B.BinaryConv2d(8, 4, 3, padding=1)
    layer.use_kernel = True
    x = torch.randn(2, 8, 5, 5)
    assert not _xnor_kernel.serves(x)                       # autograd on: training runs the simulation
    with torch.no_grad():
        assert _xnor_kernel.serves(x) and not _xnor_kernel.serves(x.to("meta"))
        assert layer.to("meta")(x.to("meta")).shape == (2, 4, 5, 5)
        with pytest.raises(ValueError, match="CPU tensors"):
            _xnor_kernel.layer_forward(layer, x.to("meta"), torch.ones(4))
