"""ye2018rethinking: ISTA on BN scales zeroes channels; constant channels are folded and removed for real."""
from __future__ import annotations

import copy

import torch
from torch import nn

from mcbench.benchmarks.archs import SmallCNN
from mcbench.methods.flows import prune
from mcbench.methods.protocols import StepInfo
from mcbench.methods.pruning._physical import find_chains
from mcbench.methods.pruning.ye2018rethinking import Ista, fold_constant_channels, rescale, soft_threshold
from mcbench.methods.registry import REGISTRY


def _model(seed=0):
    torch.manual_seed(seed)
    m = SmallCNN(1, 3, (6, 8))
    for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def test_registered():
    assert "ye2018rethinking" in REGISTRY.keys()


def test_ista_step_is_the_proximal_gradient_step():
    m = _model()
    bn = m.stage1[1]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -0.02, 0.03, 1.0, -0.8, 0.01]))
    bn.weight.grad = torch.tensor([1.0, 0.0, -1.0, 0.0, 2.0, 0.0])
    ista = Ista({"stage1.0": bn}, {"stage1.0": 2.0}, lr_mult=1.0)
    info = StepInfo(1, 10, 0, 0.01)
    ista.before_step(m, info)
    with torch.no_grad():
        bn.weight.add_(123.0)                          # whatever the optimiser did to gamma is replaced
    ista.after_step_info(m, info)
    # z = gamma - 0.01 * g; threshold 0.01 * 2 = 0.02
    z = torch.tensor([0.49, -0.02, 0.04, 1.0, -0.82, 0.01])
    expect = torch.tensor([0.47, 0.0, 0.02, 0.98, -0.80, 0.0])
    torch.testing.assert_close(bn.weight.detach(), expect)
    torch.testing.assert_close(soft_threshold(z, 0.02), expect)
    assert ista.zero_fraction() == 2 / 6


def test_rescaling_keeps_the_function():
    m, x = _model(), torch.randn(4, 1, 8, 8)
    chains = find_chains(m, x[:1])
    ref = m(x)
    rescale(m, chains, 0.1)
    torch.testing.assert_close(m(x), ref, rtol=1e-4, atol=1e-5)
    assert m.stage1[1].weight.abs().max() < 0.2


def test_zero_gamma_channels_are_folded_and_removed_exactly_for_a_linear_consumer():
    m, x = _model(), torch.randn(5, 1, 8, 8)
    chains = find_chains(m, x[:1])
    with torch.no_grad():
        m.stage2[1].weight[[1, 4, 6]] = 0              # gamma = 0: constant ReLU(beta) channels (stage2 -> fc)
        m.stage2[1].bias[1] = 0.7                      # a positive constant must reach the fc bias
    ref = m(x)
    folded = fold_constant_channels(m, {"stage2.0": chains["stage2.0"]})
    assert folded == 3
    small = prune.remove_channels(m, x[:1])
    assert small.stage2[0].out_channels == 5 and small.fc.in_features == 5
    torch.testing.assert_close(small(x), ref, rtol=1e-5, atol=1e-5)


def test_folding_into_a_padded_conv_is_exact_away_from_the_border():
    m, x = _model(), torch.randn(3, 1, 8, 8)
    chains = find_chains(m, x[:1])
    with torch.no_grad():
        m.stage1[1].weight[[0, 3]] = 0
        m.stage1[1].bias[[0, 3]] = torch.tensor([0.5, 0.9])
    feats = {}
    h = m.stage2[0].register_forward_hook(lambda mod, i, o: feats.__setitem__("ref", o))
    m(x)
    h.remove()
    small = copy.deepcopy(m)
    fold_constant_channels(small, {"stage1.0": chains["stage1.0"]})
    small = prune.remove_channels(small, x[:1])
    small.stage2[0].register_forward_hook(lambda mod, i, o: feats.__setitem__("new", o))
    small(x)
    assert small.stage1[0].out_channels == 4
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    torch.testing.assert_close(feats["new"][inner], feats["ref"][inner], rtol=1e-5, atol=1e-5)
    assert (feats["new"] - feats["ref"]).abs().max() > 1e-3      # the border differs: stated in Deviations
