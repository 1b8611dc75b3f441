"""tang2020scop: knockoffs keep the second moments; filters carrying only knockoff-like signal rank last."""
from __future__ import annotations

import torch
from torch import nn

from mcbench.benchmarks.archs import SmallCNN
from mcbench.methods.pruning._physical import find_chains
from mcbench.methods.pruning.tang2020scop import GaussianKnockoffs, ScopNet
from mcbench.methods.registry import REGISTRY


def test_registered():
    assert "tang2020scop" in REGISTRY.keys()


def test_gaussian_knockoffs_are_exchangeable_in_the_second_moments():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4000, 3, generator=g)
    x = torch.stack([base[:, 0], 0.8 * base[:, 0] + 0.6 * base[:, 1], base[:, 2]], 1).view(4000, 1, 1, 3)
    ko = GaussianKnockoffs(x, shrink=0.0)
    xk = ko(x, torch.Generator().manual_seed(1)).flatten(1)
    xf = x.flatten(1)
    joint = torch.corrcoef(torch.cat([xf, xk], 1).T)
    real, knock, cross = joint[:3, :3], joint[3:, 3:], joint[:3, 3:]
    torch.testing.assert_close(knock, real, atol=0.05, rtol=0)                     # same correlations
    off = ~torch.eye(3, dtype=torch.bool)
    torch.testing.assert_close(cross[off], real[off], atol=0.05, rtol=0)            # swap-invariant off-diagonal
    assert (cross.diagonal() < 0.999).all()                                         # not a copy of X


def test_factors_mix_real_and_knockoff_features_and_rank_by_their_difference():
    torch.manual_seed(0)
    m = SmallCNN(1, 3, (4, 5)).eval()
    x = torch.randn(64, 1, 8, 8)
    chains = find_chains(m, x[:1])
    net = ScopNet(m, {n: c.bn for n, c in chains.items()}, GaussianKnockoffs(x))
    assert all(not p.requires_grad for p in net.net.parameters())
    with torch.no_grad():
        net.logit_real["stage1_0"].fill_(20.0)
        net.logit_knock["stage1_0"].fill_(-20.0)
        net.logit_real["stage2_0"].fill_(20.0)
        net.logit_knock["stage2_0"].fill_(-20.0)
        ref = m.__class__.forward(m, x)                                             # hooks pass real features only
        torch.testing.assert_close(net(x), ref, atol=1e-5, rtol=1e-5)
        net.logit_real["stage2_0"][2] = -20.0                                      # filter 2: knockoff only
        net.logit_knock["stage2_0"][2] = 20.0
    imp = net.importance()["stage2.0"]
    assert int(torch.argmin(imp)) == 2 and imp[2] < -0.99
