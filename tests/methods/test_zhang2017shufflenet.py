"""zhang2017shufflenet: channel shuffle is a permutation that mixes groups; Table 1's complexities."""
from __future__ import annotations

import pytest
import torch

from compact_checks import forward_and_one_step, paper_count, task_model
from mcbench.methods.compact.zhang2017shufflenet import ShuffleNetV1, ShuffleUnit, channel_shuffle

KEY = "zhang2017shufflenet"


def test_channel_shuffle_is_a_permutation_of_channels():
    g, n = 3, 4
    x = torch.arange(g * n, dtype=torch.float32).reshape(1, g * n, 1, 1).expand(2, -1, 5, 5).contiguous()
    y = channel_shuffle(x, g)
    perm = y[0, :, 0, 0].long()
    assert sorted(perm.tolist()) == list(range(g * n))            # a permutation
    assert torch.equal(y, x[:, perm])
    # Section 3.1: output position k*g + j holds channel j*n + k (group j's k-th channel)
    assert perm.tolist() == [j * n + k for k in range(n) for j in range(g)]
    # every consecutive block of n outputs (one next-layer group) holds channels from every input group
    for block in perm.reshape(g, n):
        assert {int(c) // n for c in block} == set(range(g))


def test_shuffle_with_one_group_is_the_identity_and_inverts_with_n_groups():
    x = torch.randn(2, 12, 3, 3)
    assert torch.equal(channel_shuffle(x, 1), x)
    assert torch.equal(channel_shuffle(channel_shuffle(x, 3), 4), x)


@pytest.mark.parametrize("g,mflops", [(1, 143), (2, 140), (3, 137), (4, 133), (8, 137)])
def test_table_1_complexity_for_each_group_count(g, mflops):
    """Table 1: complexity of ShuffleNet 1x in MFLOPs (= mult-adds) for g = 1..8."""
    ours = paper_count(KEY, {"groups": g, "scale": 1.0, "stem": "paper"}, (3, 224, 224))
    assert abs(ours.macs / 1e6 - mflops) / mflops < 0.05


def test_table_2_scaled_complexity():
    """Table 2: ShuffleNet 0.5x 38 MFLOPs, 0.25x 13 MFLOPs (g = 3)."""
    for scale, mflops in ((0.5, 38), (0.25, 13)):
        ours = paper_count(KEY, {"groups": 3, "scale": scale, "stem": "paper"}, (3, 224, 224))
        assert abs(ours.macs / 1e6 - mflops) / mflops < 0.1, (scale, ours.macs)


def test_units_follow_figure_2():
    unit = ShuffleUnit(240, 240, 3, 1)
    assert unit.gconv1[0].groups == 3 and unit.dwconv[0].groups == 60 and unit.gconv2[0].groups == 3
    down = ShuffleUnit(240, 480, 3, 2)
    assert down(torch.randn(1, 240, 14, 14)).shape == (1, 480, 7, 7)  # concat: 240 pooled + 240 new
    first = ShuffleNetV1(1000, 3, 3).stages[0]
    assert first.gconv1[0].groups == 1  # stage 2's first pointwise layer is not grouped


def test_task_network_forward_and_training_step():
    forward_and_one_step(task_model(KEY, 1, (8, 8), 10), 1, (8, 8), 10)


@pytest.mark.slow
def test_task_network_at_fmnist_size_trains():
    forward_and_one_step(task_model(KEY, 1, (28, 28), 10), 1, (28, 28), 10)
