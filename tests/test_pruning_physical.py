"""Structured pruning made physical: dead channels removed exactly, MACs and bytes really drop."""
from __future__ import annotations

import torch
from torch import nn

from mcbench.benchmarks import measure
from mcbench.benchmarks.archs import SmallCNN
from mcbench.methods.pruning._masks import LayerMasks
from mcbench.methods.pruning._physical import find_chains, zero_bn_of_masked_channels
from mcbench.methods.pruning._surgery import remove_dead_channels


def _trained_like(seed=0):
    torch.manual_seed(seed)
    m = SmallCNN(1, 10, (16, 32, 64))
    for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):  # non-trivial BN statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def test_chains_follow_conv_bn_relu_pool_to_consumer():
    chains = find_chains(_trained_like(), torch.randn(1, 1, 28, 28))
    assert {c: (ch.bn, ch.consumer) for c, ch in chains.items()} == {
        "stage1.0": ("stage1.1", "stage2.0"), "stage2.0": ("stage2.1", "stage3.0"), "stage3.0": ("stage3.1", "fc")}


def test_channel_removal_is_exact_and_physical():
    model, x = _trained_like(), torch.randn(8, 1, 28, 28)
    chains = find_chains(model, x[:1])
    masks = LayerMasks(model, lambda w: w.abs(), structured=True, only=set(chains))  # never the classifier
    assert set(masks.layers) == {"stage1.0", "stage2.0", "stage3.0"}
    masks.update(0.5)
    masks.apply()
    zero_bn_of_masked_channels(model, chains)
    before = model(x)
    small, removed = remove_dead_channels(model, x[:1])
    assert removed == 8 + 16 + 32
    assert [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)] == [8, 16, 32]
    assert small.fc.in_features == 32
    torch.testing.assert_close(small(x), before, rtol=1e-5, atol=1e-5)
    macs_big = measure.macs_from_flops(measure.count_flops(model, x[:1]))
    macs_small = measure.macs_from_flops(measure.count_flops(small, x[:1]))
    assert 3.5 < macs_big / macs_small < 4.5  # halving both sides of each conv: ~4x fewer MACs
    assert measure.serialized_bytes(small)[0] < measure.serialized_bytes(model)[0] / 3


def test_channels_with_live_bn_are_left_alone():
    model = _trained_like()
    with torch.no_grad():
        model.stage1[0].weight[:4] = 0  # conv rows zero but BN beta nonzero: not exactly dead
    _, removed = remove_dead_channels(model, torch.randn(1, 1, 28, 28))
    assert removed == 0


def test_branching_models_are_not_touched():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            y = self.a(x)
            return self.b(y) + y  # 'a' feeds two users: removing its channels would break the add

    assert "a" not in find_chains(Residual(), torch.randn(1, 4, 8, 8))


def test_chains_stop_at_concat_second_reader_and_wide_flatten():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(1, 4, 3, padding=1)
            self.c = nn.Conv2d(8, 6, 3, padding=1)                            # reads a and b concatenated
            self.d, self.e = nn.Conv2d(6, 5, 1), nn.Conv2d(5, 3, 1)
            self.f, self.g = nn.Conv2d(5, 2, 1), nn.Conv2d(3, 2, 1)             # e and f both read d; f, g add
            self.fc = nn.Linear(2 * 4 * 4, 3)                                   # flatten over 4x4: 16 inputs per channel

        def forward(self, x):
            y = torch.relu(self.c(torch.cat([self.a(x), self.b(x)], 1)))
            z = torch.relu(self.d(y))
            w = self.g(self.e(z)) + self.f(z)
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(w, 4), 1))

    chains = find_chains(Mixed().eval(), torch.randn(1, 1, 8, 8))
    # a, b: concatenated; d: two readers; f, g: coupled by the add; fc: the output. c -> d passes a
    # functional ReLU (the old fx walk stopped there); e -> g is a chain although g feeds an add.
    assert {n: (c.bn, c.consumer) for n, c in chains.items()} == {"c": (None, "d"), "e": (None, "g")}


def test_structured_pruner_protocol_end_to_end(smoke_harness, digits):
    """A minimal structured pruner (L1 filter norm, one-shot schedule) through the PruningMethod protocol."""
    from dataclasses import dataclass

    from mcbench.methods.protocols import Compressed, PruningMethod

    class OneShotL1(PruningMethod):  # not registered: a protocol test, not a paper
        structured = True

        @dataclass
        class Config:
            sparsity: float = 0.5

        def importance(self, weight):
            return weight.abs()

        def sparsity_at(self, step, total):
            return self.config.sparsity

        def finalize(self, model, masks):
            return Compressed(model, real=True, note="channels removed")

    out = OneShotL1().apply(smoke_harness.context(0))
    convs = [m for m in out.model.modules() if isinstance(m, nn.Conv2d)]
    widths = smoke_harness.task.baseline.widths
    assert [c.out_channels for c in convs] == [w // 2 for w in widths]
    with torch.no_grad():
        assert out.model(digits.x_test[:4]).shape == (4, 10)


def test_a_flatten_over_a_wide_map_is_not_a_chain_but_over_1x1_it_is():
    def head(pool: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(pool), nn.Flatten(),
                             nn.Linear(3 * pool * pool, 2)).eval()

    x = torch.randn(1, 1, 6, 6)
    assert find_chains(head(2), x) == {}                                   # 4 inputs per channel: not one-to-one
    assert {n: c.consumer for n, c in find_chains(head(1), x).items()} == {"0": "4"}
