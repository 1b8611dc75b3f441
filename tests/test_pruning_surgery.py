"""Physical channel removal across residual sums, concatenations and grouped convs (Torch-Pruning).

The physically pruned model must compute exactly what the masked model computes, its parameters
and MACs must really drop, and the harness's deploy form must still build from it.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mcbench.benchmarks import measure
from mcbench.benchmarks.archs import ArchSpec, build
from mcbench.methods.flows import prune
from mcbench.methods.pruning import _surgery as S


class Block(nn.Module):
    def __init__(self, c: int, groups: int = 1) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False, groups=groups), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + x)


class Branchy(nn.Module):
    """Residual blocks (one with a grouped conv), a concatenation, a depthwise conv, a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.r1, self.r2 = Block(8), Block(8, groups=2)
        self.a, self.b = nn.Conv2d(8, 6, 1), nn.Conv2d(8, 4, 1)
        self.dw, self.bn = nn.Conv2d(10, 10, 3, padding=1, groups=10), nn.BatchNorm2d(10)
        self.fc = nn.Linear(10, 3)

    def forward(self, x):
        x = self.r2(self.r1(self.stem(x)))
        x = torch.cat([self.a(x), self.b(x)], 1)
        return self.fc(torch.relu(self.bn(self.dw(x))).mean((2, 3)))


def _nontrivial(m: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def _half(groups, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {gr.root: S.symmetric_keep(torch.rand(gr.channels, generator=g), gr.channels // 2, gr.conv_groups)
            for gr in groups}


def test_groups_couple_residual_concat_and_grouped_convs():
    torch.manual_seed(0)
    m = _nontrivial(Branchy())
    groups = {g.root: g for g in S.channel_groups(m, torch.randn(1, 1, 8, 8))}
    assert set(groups) == {"stem.0", "r1.c1", "r2.c1", "a", "b"}          # never the classifier
    assert set(groups["stem.0"].producers) == {"stem.0", "r1.c2", "r2.c2"}  # all writers of the residual stream
    assert set(groups["stem.0"].norms) == {"stem.1", "r1.b2", "r2.b2"}
    assert groups["b"].producers["dw"] == [6, 7, 8, 9]                      # concat: b's channels are dw's 6..9
    assert groups["r2.c1"].conv_groups == 2 and groups["stem.0"].conv_groups == 2


def test_physically_pruned_branching_model_equals_the_masked_one():
    torch.manual_seed(0)
    m, x = _nontrivial(Branchy()), torch.randn(6, 1, 8, 8)
    groups = S.channel_groups(m, x[:1])
    keep = _half(groups)
    masked = copy.deepcopy(m)
    S.mask_channels(masked, groups, keep)
    small = S.prune_channels(m, x[:1], keep)
    with torch.no_grad():
        assert (masked(x) - m(x)).abs().max() > 1e-3                        # the mask changed the function
        torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-6)
    assert small.stem[0].out_channels == small.r1.c2.out_channels == small.r2.c2.out_channels == 4
    assert (small.r2.c2.in_channels, small.r2.c2.groups, small.r2.c2.weight.shape[1]) == (4, 2, 2)
    assert (small.a.out_channels, small.b.out_channels, small.dw.groups, small.fc.in_features) == (3, 2, 5, 5)
    assert measure.count_params(small)[0] < measure.count_params(m)[0] / 2.5


def test_asymmetric_drop_in_a_grouped_conv_is_refused():
    m = _nontrivial(Branchy())
    x = torch.randn(1, 1, 8, 8)
    keep = torch.tensor([False, True, True, True, True, True, True, True])  # drops a channel of conv group 0 only
    with pytest.raises(ValueError, match="groups=2"):
        S.prune_channels(m, x, {"r2.c1": keep})


def test_dead_channels_of_a_residual_stream_are_removed_by_the_flow():
    torch.manual_seed(1)
    m, x = _nontrivial(Branchy()), torch.randn(4, 1, 8, 8)
    groups = S.channel_groups(m, x[:1])
    stem = next(g for g in groups if g.root == "stem.0")
    keep = torch.ones(8, dtype=torch.bool)
    keep[[1, 5]] = False                                                 # symmetric for r2.c2's two groups
    S.mask_channels(m, groups, {"stem.0": keep})
    assert S.dead_channels(m, stem).tolist() == (~keep).tolist()
    with torch.no_grad():
        m.r1.b2.bias[1] = 0.1                                            # one writer still live: not dead
    assert S.dead_channels(m, stem).tolist() == [False] * 5 + [True] + [False] * 2
    small, removed = S.remove_dead_channels(m, x[:1])
    assert removed == 0                                                  # channel 5 alone would break r2.c2's groups
    with torch.no_grad():
        m.r1.b2.bias[1] = 0
    small = prune.remove_channels(m, x[:1])
    assert small.stem[0].out_channels == 6
    with torch.no_grad():
        torch.testing.assert_close(small(x), m(x), rtol=1e-5, atol=1e-6)


def _pruned_resnet():
    torch.manual_seed(0)
    m = _nontrivial(build(ArchSpec("resnet", (8, 16, 32), depth=2), 1, 10, (16, 16)))
    x = torch.randn(8, 1, 16, 16)
    groups = S.channel_groups(m, x[:1])
    assert len(groups) == 3 + 6                                          # one residual stream per stage + each block's inner conv
    keep = _half(groups, seed=3)
    masked = copy.deepcopy(m)
    S.mask_channels(masked, groups, keep)
    small = S.prune_channels(m, x[:1], keep)
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-5)
    ratio = measure.macs_from_flops(measure.count_flops(m, x[:1])) / measure.macs_from_flops(
        measure.count_flops(small, x[:1]))
    assert 3.3 < ratio < 4.2                                              # half of both sides of (almost) every conv
    return small, masked, x


def test_resnet_pruned_for_real_equals_masked_with_fewer_macs():
    _pruned_resnet()


@pytest.mark.slow
def test_pruned_resnet_has_a_checked_deploy_form():
    from mcbench.benchmarks.deploy import deploy

    small, masked, x = _pruned_resnet()
    form = deploy(small, x, check_inputs=(torch.randn(3, 1, 16, 16),), select_runs=2, select_warmup=1)
    assert "bn-folded" in form.path and "eager (fallback" not in form.path
    with torch.inference_mode():
        torch.testing.assert_close(form.module(x), masked(x), rtol=1e-4, atol=1e-4)


def test_remove_lowest_channels_drops_exactly_the_lowest_scored_and_equals_the_masked_net():
    """The selection NISP and SCOP share: per group int(ratio * channels) lowest scores go, for real."""
    from types import SimpleNamespace
    m = _nontrivial(Branchy())
    x = torch.randn(4, 1, 8, 8)
    groups = S.channel_groups(m, x[:1])
    g = torch.Generator().manual_seed(5)
    scores = {gr.root: torch.rand(gr.channels, generator=g) for gr in groups if gr.conv_groups == 1}
    ctx = SimpleNamespace(example_input=lambda b=1: torch.randn(b, 1, 8, 8))
    small = prune.remove_lowest_channels(ctx, copy.deepcopy(m), scores, 0.5)
    keep = {r: s >= s.sort().values[int(0.5 * len(s))] for r, s in scores.items()}   # the upper half by score
    masked = copy.deepcopy(m)
    S.mask_channels(masked, groups, keep)
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-5)
    mods = dict(small.named_modules())
    for r, s in scores.items():
        assert mods[r].weight.shape[0] == len(s) - int(0.5 * len(s))
    with pytest.raises(ValueError, match="not roots"):
        prune.remove_lowest_channels(ctx, copy.deepcopy(m), {"fc": torch.rand(3)}, 0.5)
