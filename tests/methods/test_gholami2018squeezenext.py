"""gholami2018squeezenext: the SqNxt block's two-stage squeeze and separable 3x1/1x3 filters; Table 1's size."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from compact_checks import forward_and_one_step, paper_count, task_model
from mcbench.methods.compact.gholami2018squeezenext import SqNxtBlock

KEY = "gholami2018squeezenext"


def _convs(m: nn.Module) -> list[nn.Conv2d]:
    return [c for c in m.modules() if isinstance(c, nn.Conv2d)]


def test_block_squeezes_twice_and_factorises_the_3x3():
    """Fig. 2: C -> C/2 -> C/4 (1x1, 1x1), C/4 -> C/2 (3x1), C/2 -> C/2 (1x3), C/2 -> C (1x1)."""
    block = SqNxtBlock(128, 128, 1)
    shapes = [(c.in_channels, c.out_channels, c.kernel_size) for c in _convs(block.branch)]
    assert shapes == [(128, 64, (1, 1)), (64, 32, (1, 1)), (32, 64, (3, 1)), (64, 64, (1, 3)), (64, 128, (1, 1))]
    assert isinstance(block.shortcut, nn.Identity)
    assert not any(c.groups > 1 for c in _convs(block))            # no depthwise convolutions (Section 3)
    # the separable pair has 2K/K^2 of a 3x3's weights on the same channels
    sep = sum(c.weight.numel() for c in _convs(block.branch)[2:4])
    assert sep == 3 * 32 * 64 + 3 * 64 * 64 < 9 * 32 * 64 + 9 * 64 * 64


def test_downsampling_block_projects_the_shortcut():
    block = SqNxtBlock(64, 128, 2)
    assert block(torch.randn(2, 64, 8, 8)).shape == (2, 128, 4, 4)
    assert _convs(block.branch)[0].out_channels == 64 and _convs(block.shortcut)[0].stride == (2, 2)


def test_residual_block_is_the_identity_at_init_and_learns():
    torch.manual_seed(0)
    block = SqNxtBlock(16, 16, 1).eval()
    x = torch.randn(2, 16, 6, 6)
    assert torch.allclose(block(x), torch.relu(x))                 # zero-init residual: f(x) = 0
    block.branch[-1][1].weight.data.fill_(1.0)
    assert not torch.allclose(block(x), torch.relu(x))


@pytest.mark.slow  # duplicates test_paper_configs' check of the catalog figure, plus ratios
def test_table_1_size_of_1_0_sqnxt_23():
    """Table 1: 1.0-SqNxt-23, 0.72M parameters, 282M MACs at 224x224."""
    ours = paper_count(KEY, {"width": 1.0, "blocks": "23", "stem": "paper"}, (3, 224, 224))
    assert abs(ours.params_count - 0.72e6) / 0.72e6 < 0.02
    assert abs(ours.macs - 282e6) / 282e6 < 0.02
    wider = paper_count(KEY, {"width": 2.0, "blocks": "23", "stem": "paper"}, (3, 224, 224))
    assert 3.0 < wider.macs / ours.macs < 4.0                      # width x2: about 4x the MACs


def test_task_network_forward_and_training_step():
    forward_and_one_step(task_model(KEY, 1, (8, 8), 10), 1, (8, 8), 10)


@pytest.mark.slow
def test_task_network_at_fmnist_size_trains():
    forward_and_one_step(task_model(KEY, 1, (28, 28), 10), 1, (28, 28), 10)
