"""louizos2017learning: hard-concrete gates, the expected L0 penalty, gates folded and channels removed."""
from __future__ import annotations

import math

import torch
from torch import nn

from mcbench.benchmarks.archs import SmallCNN
from mcbench.methods.flows import prune
from mcbench.methods.pruning.louizos2017learning import Gates, HardConcrete
from mcbench.methods.registry import REGISTRY


def _model(seed=0):
    torch.manual_seed(seed)
    m = SmallCNN(1, 3, (4, 6))
    for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def test_registered():
    assert "louizos2017learning" in REGISTRY.keys()


def test_expected_l0_matches_a_hand_computation():
    m = _model()
    gates = Gates(m, torch.randn(1, 1, 8, 8))
    assert set(gates.where.values()) == {"stage1.1", "stage2.1"}       # gated after each BN, never the classifier
    la1, la2 = [0.0, 2.0, -3.0, 1.0], [0.5, -1.0, 4.0, 0.0, -6.0, 2.5]
    gates.gates["stage1_0"].set_log_alpha(torch.tensor(la1))
    gates.gates["stage2_0"].set_log_alpha(torch.tensor(la2))
    # P(z != 0) = sigmoid(log alpha - beta log(-gamma/zeta)), beta = 2/3, gamma = -0.1, zeta = 1.1
    shift = (2 / 3) * math.log(0.1 / 1.1)
    p = lambda a: 1 / (1 + math.exp(-(a - shift)))
    size1, size2 = 1 * 9, 4 * 9                                        # weights per output channel
    hand = (size1 * sum(map(p, la1)) + size2 * sum(map(p, la2))) / (size1 * 4 + size2 * 6)
    assert abs(float(gates.expected_l0_fraction()) - hand) < 1e-6
    assert abs(p(0.0) - 0.8318) < 1e-3                                 # a value worked by hand: sigmoid(1.5986)


def test_hard_concrete_samples_lie_in_0_1_with_exact_zeros_and_ones():
    torch.manual_seed(0)
    g = HardConcrete(20000, 1)
    g.set_log_alpha(torch.zeros(20000))
    z = g.train()()
    assert 0 <= float(z.min()) and float(z.max()) <= 1
    frac_zero, frac_one = float((z == 0).float().mean()), float((z == 1).float().mean())
    assert 0.15 < frac_zero < 0.26 and 0.15 < frac_one < 0.26           # P(z=0) = sigmoid(beta logit(1/12)) = 0.168 each
    assert abs((1 - frac_zero) - float(g.prob_nonzero()[0])) < 0.02    # Eq. 12 agrees with sampling
    g.set_log_alpha(torch.tensor([-10.0, 10.0] + [0.0] * 19998))
    z = g.eval()()
    assert z[0] == 0 and z[1] == 1 and abs(float(z[2]) - 0.5) < 1e-6   # Eq. 13: clamp(sigmoid(.)*1.2-0.1)


def test_folded_gates_and_removed_channels_compute_the_gated_model():
    m, x = _model(), torch.randn(5, 1, 8, 8)
    gates = Gates(m, x[:1])
    gates.gates["stage1_0"].set_log_alpha(torch.tensor([3.0, -9.0, 0.2, -0.4]))
    gates.gates["stage2_0"].set_log_alpha(torch.tensor([-9.0, 1.0, -8.0, 0.1, 5.0, -0.3]))
    gates.attach(m)
    gates.eval()
    ref = m(x)
    gates.detach_hooks()
    assert not torch.allclose(m(x), ref)                               # the gates did change the function
    closed = gates.fold(m)
    assert closed == 3
    small = prune.remove_channels(m, x[:1])
    assert [c.out_channels for c in small.modules() if isinstance(c, nn.Conv2d)] == [3, 4]
    torch.testing.assert_close(small(x), ref, rtol=1e-5, atol=1e-6)


def test_gate_lr_mult_moves_log_alpha_that_much_faster_under_adam():
    moved = {}
    for mult in (1.0, 20.0):
        g = HardConcrete(4, 9, init_drop=0.3, lr_mult=mult)
        start = g.log_alpha.detach().clone()
        assert torch.allclose(start, torch.full((4,), math.log(0.7 / 0.3)))     # same init whatever the multiplier
        opt = torch.optim.Adam(g.parameters(), lr=1e-3)
        for _ in range(5):
            opt.zero_grad()
            g.prob_nonzero().sum().backward()
            opt.step()
        moved[mult] = float((start - g.log_alpha.detach()).mean())
    assert moved[1.0] > 0 and abs(moved[20.0] / moved[1.0] - 20.0) < 0.5
