"""sun2018igcv3: group 1x1 convs interleaved so the composed kernel is dense (loose complementary condition)."""
from __future__ import annotations

import pytest
import torch

from compact_checks import forward_and_one_step, paper_count, task_model
from mcbench.methods.compact.sun2018igcv3 import IGCV3Block, Interleave, interleave

KEY = "sun2018igcv3"


def _reach(block: IGCV3Block, c_in: int) -> torch.Tensor:
    """(out, in) bool: which input channels reach which output channels through the block's convs.

    Each 1x1 or 3x3 kernel is replaced by its support (all ones), BN and ReLU6 by the identity, so a
    nonzero Jacobian entry means a path exists (the paper's connectivity of W = P2 W3 P1 W2 W1)."""
    def support(conv):
        w = torch.zeros_like(conv.weight)
        w[...] = 1.0
        return lambda x: torch.nn.functional.conv2d(x, w, None, 1, conv.padding, 1, conv.groups)
    pw1, dw, pw2 = support(block.pw1[0]), support(block.dw[0]), support(block.pw2[0])
    eye = torch.eye(c_in).reshape(c_in, c_in, 1, 1)
    y = block.p2(pw2(dw(block.p1(pw1(eye)))))      # one input channel per batch item
    return (y[..., 0, 0] != 0).T


def test_interleave_is_a_permutation_and_p2_undoes_a_g_interleave():
    x = torch.randn(2, 12, 3, 3)
    y = interleave(x, 2)
    perm = [int(torch.nonzero((y[0, i] == x[0]).all(-1).all(-1))[0]) for i in range(12)]
    assert sorted(perm) == list(range(12)) and perm == [0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11]
    assert torch.equal(Interleave(6)(interleave(x, 2)), x)


def test_composed_kernel_is_dense_the_loose_complementary_condition():
    block = IGCV3Block(16, 16, 1, expansion=6, groups=2)
    assert block.pw1[0].groups == 2 and block.pw2[0].groups == 2 and block.dw[0].groups == 96
    assert _reach(block, 16).all()                  # every output sees every input
    block.p1 = Interleave(1)                        # without P1 the two groups never mix
    reach = _reach(block, 16)
    assert not reach.all() and reach.float().mean() == 0.5


def test_block_keeps_the_identity_shortcut_and_downsamples():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    same = IGCV3Block(16, 16, 1, 6).eval()
    assert same.use_res and same(x).shape == x.shape
    down = IGCV3Block(16, 24, 2, 6).eval()
    assert not down.use_res and down(x).shape == (2, 24, 4, 4)


@pytest.mark.slow  # duplicates test_paper_configs' check of the catalog figure, plus ratios
def test_igcv3_d_size():
    """IGCV3-D 1.0 at 224x224: 3.5M parameters (the record's table); deeper than MobileNetV2 at similar size."""
    ours = paper_count(KEY, {"width": 1.0, "depth": "D", "stem_stride": 2}, (3, 224, 224))
    assert abs(ours.params_count - 3.5e6) / 3.5e6 < 0.02
    mnv2_depth = paper_count(KEY, {"width": 1.0, "depth": "mobilenetv2", "stem_stride": 2}, (3, 224, 224))
    assert mnv2_depth.params_count < ours.params_count and mnv2_depth.macs < ours.macs


def test_task_network_forward_and_training_step():
    forward_and_one_step(task_model(KEY, 1, (8, 8), 10), 1, (8, 8), 10)


@pytest.mark.slow
def test_task_network_at_fmnist_size_trains():
    forward_and_one_step(task_model(KEY, 1, (28, 28), 10), 1, (28, 28), 10)
