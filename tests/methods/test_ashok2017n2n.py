"""ashok2017n2n: the reward (Sec. 3.4), removal and shrinkage actions, REINFORCE, and a search that never
touches the test split."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from mcbench.benchmarks import archs
from mcbench.methods.distillation.ashok2017n2n import (SHRINK_FRACTIONS, ChainNet, MovingBaseline, RemovalPolicy,
                                                       ShrinkPolicy, check_plain_chain, describe_chain,
                                                       layer_descriptions, n2n_reward, param_count, reinforce_step,
                                                       remove_layers, shrink_layers)
from mcbench.methods.registry import REGISTRY

KEY = "ashok2017n2n"


def teacher_deep() -> nn.Module:
    """The task's ``teacher_deep`` variant: widths (64, 128, 256), two conv blocks per stage."""
    return archs.build(archs.ArchSpec("cnn", (64, 128, 256), depth=2), 1, 10, (28, 28))


def spatial_before_pooling(model: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    seen = {}
    handle = model.gap.register_forward_hook(lambda _m, i, _o: seen.__setitem__("in", tuple(i[0].shape)))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    return seen["in"]


def test_reward_matches_hand_computation():
    # C = 1 - 25/100 = 0.75, R_c = 0.75 * (2 - 0.75) = 0.9375, R_a = 80/90
    assert n2n_reward(25, 100, 80.0, 90.0) == pytest.approx(0.9375 * 80 / 90)
    assert n2n_reward(100, 100, 90.0, 90.0) == 0.0                         # no compression, no reward
    assert n2n_reward(1, 100, 90.0, 90.0) == pytest.approx(0.99 * 1.01)     # R_c -> 1 as C -> 1
    assert n2n_reward(50, 100, 45.0, 90.0) < n2n_reward(50, 100, 90.0, 90.0)


def test_described_teacher_rebuilt_as_a_chain_computes_the_same_function():
    teacher = teacher_deep().eval()
    arch = describe_chain(teacher)
    assert arch.widths() == [64, 64, 128, 128, 256, 256]
    assert [layer.pools_after for layer in arch.layers] == [0, 1, 0, 1, 0, 0]
    x = torch.randn(3, 1, 28, 28)
    check_plain_chain(teacher, arch, x)   # raises if the rebuilt chain differs
    assert layer_descriptions(arch).shape == (6, 8)


def test_a_network_with_skip_connections_is_refused():
    resnet = archs.build(archs.ArchSpec("resnet", (8, 16), depth=1), 1, 10, (28, 28)).eval()
    with torch.no_grad():   # non-trivial BN statistics so the shortcut changes the output
        for m in resnet.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
    with pytest.raises(ValueError, match="plain conv chain"):
        check_plain_chain(resnet, describe_chain(resnet), torch.randn(2, 1, 28, 28))


def test_removal_gives_a_valid_smaller_network_of_the_stated_shape():
    teacher = teacher_deep()
    arch = describe_chain(teacher)
    child_arch = remove_layers(arch, [False, True, False, False, True, True])
    # the removed layers' pools move to the previous kept layer: spatial sizes stay the teacher's
    assert child_arch.widths() == [64, 256, 256]
    assert [layer.pools_after for layer in child_arch.layers] == [2, 0, 0]
    child = ChainNet(child_arch)
    convs = [m for m in child.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 64), (64, 256), (256, 256)]
    x = torch.randn(2, 1, 28, 28)
    assert child.eval()(x).shape == (2, 10)
    assert spatial_before_pooling(child, x)[2:] == spatial_before_pooling(teacher, x)[2:] == (7, 7)
    assert param_count(child) < param_count(teacher)
    leading = remove_layers(arch, [False, False, True, False, True, True])   # first stage gone: its pool stays
    assert leading.leading_pools == 1 and leading.widths() == [128, 256, 256]
    assert ChainNet(leading).eval()(x).shape == (2, 10)
    assert remove_layers(arch, [False] * 6) is None                         # nothing left: invalid (R = -1)


def test_shrinkage_keeps_the_stated_fraction_of_outputs():
    arch = remove_layers(describe_chain(teacher_deep()), [True, False, True, False, True, False])
    small = shrink_layers(arch, [0.5, 0.1, 1.0])
    assert small.widths() == [32, 13, 256]
    child = ChainNet(small)
    assert [m.num_features for m in child.modules() if isinstance(m, nn.BatchNorm2d)] == [32, 13, 256]
    assert child.fc.in_features == 256 and child.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert shrink_layers(arch, [0.1, 0.1, 0.1]).widths() == [6, 13, 26]
    with pytest.raises(ValueError):
        shrink_layers(arch, [0.5, 0.5])


def test_every_sampled_policy_action_gives_a_valid_architecture_no_larger_than_the_teacher():
    teacher = teacher_deep()
    arch = describe_chain(teacher)
    gen = torch.Generator().manual_seed(0)
    removal, shrink = RemovalPolicy(), ShrinkPolicy()
    x = torch.randn(2, 1, 28, 28)
    seen = set()
    for _ in range(30):
        keep = removal.sample(layer_descriptions(arch), gen)
        kept = remove_layers(arch, keep)
        if kept is None:
            continue
        fractions = [SHRINK_FRACTIONS[i] for i in shrink.sample(layer_descriptions(kept), gen)]
        child = ChainNet(shrink_layers(kept, fractions))
        assert child.eval()(x).shape == (2, 10)
        assert param_count(child) <= param_count(teacher)
        seen.add(tuple(child.arch.widths()))
    assert len(seen) > 10   # the policies explore


@pytest.mark.parametrize("which", ["removal", "shrink"])
def test_reinforce_raises_the_log_probability_of_an_action_with_positive_advantage(which):
    torch.manual_seed(0)
    desc = layer_descriptions(describe_chain(teacher_deep()))
    policy = RemovalPolicy() if which == "removal" else ShrinkPolicy()
    action = [True, False, True, False, True, True] if which == "removal" else [2, 7, 0, 9, 4, 4]
    before = policy.log_prob(desc, action).item()
    opt = torch.optim.SGD(policy.parameters(), lr=0.05)
    reinforce_step(policy, opt, desc, [action], [1.0])
    up = policy.log_prob(desc, action).item()
    assert up > before
    reinforce_step(policy, opt, desc, [action], [-1.0])   # a negative advantage lowers it again
    assert policy.log_prob(desc, action).item() < up


def test_moving_average_baseline():
    b = MovingBaseline(decay=0.5)
    assert b.advantages([1.0, 3.0]) == [-1.0, 1.0]       # first batch: its own mean (2)
    assert b.advantages([4.0]) == [2.0]                  # b = 2, then 0.5 * 2 + 0.5 * 4 = 3
    assert b.value == 3.0


class Tripwire(torch.Tensor):
    """A tensor that fails any operation on it: the test split during the search."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        raise AssertionError(f"the test split was touched ({getattr(func, '__name__', func)})")


@pytest.mark.slow
def test_search_stays_on_validation_and_returns_the_best_child_trained(smoke_harness, monkeypatch):
    splits = smoke_harness.splits
    poisoned = dataclasses.replace(splits, x_test=torch.zeros(1).as_subclass(Tripwire),
                                   y_test=torch.zeros(1).as_subclass(Tripwire))
    monkeypatch.setattr(smoke_harness, "splits", poisoned)
    method = REGISTRY.create(KEY, removal_iterations=1, removal_rollouts=2, shrink_iterations=1, shrink_rollouts=2)
    torch.manual_seed(0)
    ctx = smoke_harness.context(0, method)
    out = method.apply(ctx)
    own = [e.stage for e in ctx.ledger.entries if not e.upstream]
    assert own == ["search:removal"] * own.count("search:removal") + ["search:shrinkage"] * 2 + ["search:policy", "final"]
    assert 0 <= own.count("search:removal") <= 2     # an all-removed child is not trained (R = -1)
    assert [e.stage for e in ctx.ledger.entries if e.upstream] == ["teacher_deep"]
    teacher = smoke_harness.build("teacher_deep")
    assert out.extra["n2n_teacher_widths"] == [64, 64, 128, 128, 256, 256]
    assert isinstance(out.model, ChainNet) and out.model.arch.widths() == out.extra["n2n_student_widths"]
    assert param_count(out.model) == out.extra["n2n_student_params"] < param_count(teacher)
    assert len(out.extra["n2n_search"]) == 4
    best = max((c for c in out.extra["n2n_search"] if c["widths"]), key=lambda c: c["reward"])
    assert best["widths"] == out.extra["n2n_student_widths"]
    assert out.train_report is not None and out.train_report.epochs_run == ctx.epochs_scratch
