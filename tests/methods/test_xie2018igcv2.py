"""xie2018igcv2: a chain of structured sparse kernels with exactly one path per channel pair (complementary
condition), group sizes balanced (balance condition), a dense composed kernel."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from compact_checks import forward_and_one_step, task_model
from mcbench.methods.compact.xie2018igcv2 import (IGCV2Block, Permute, balanced_group_sizes, complementary,
                                                  factorizations, path_counts)

KEY = "xie2018igcv2"


def _dense_kernel(block: IGCV2Block) -> torch.Tensor:
    """(out, in, 3, 3): the dense convolution the linear chain P_L W_L ... P_2 W_2 W_1 composes to.

    A unit impulse at the centre of a 3x3 map of input channel i, pushed through the block's convs and
    permutations (BN in eval mode is a per-channel affine map; its shift is removed by subtracting the
    response to zero input), gives the flipped kernel of every output channel for that input."""
    c = block.dw[0].in_channels
    block.eval()
    linear = lambda x: block.chain(block.dw(x))     # noqa: E731  (no ReLU, no identity: the composed kernel)
    impulse = torch.zeros(c, c, 3, 3, dtype=torch.float64)
    impulse[torch.arange(c), torch.arange(c), 1, 1] = 1.0
    with torch.no_grad():
        y = linear(impulse) - linear(torch.zeros(1, c, 3, 3, dtype=torch.float64))
    return y.transpose(0, 1)                         # (out, in, 3, 3)


@pytest.mark.parametrize("c_in,c_out,parts", [(16, 16, 2), (64, 64, 2), (64, 64, 3), (32, 64, 2), (24, 24, 2)])
def test_every_input_output_pair_has_exactly_one_path(c_in, c_out, parts):
    block = IGCV2Block(c_in, c_out, 1, balanced_group_sizes(c_in, parts))
    counts = path_counts(block)
    assert counts.shape == (c_out, c_in)
    assert torch.equal(counts, torch.ones_like(counts)) and complementary(block)
    # each group 1x1 convolution alone is sparse: a branch sees K_l of the C channels
    for conv, k in zip(block.convs()[1:], block.group_sizes):
        assert conv.weight.shape[1] == k and conv.groups == c_in // k


def test_composed_kernel_is_dense():
    torch.manual_seed(0)
    block = IGCV2Block(64, 64, 1, (4, 4, 4)).double()
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):          # non-trivial BN statistics: still one affine map per channel
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 2)
    kernel = _dense_kernel(block)
    assert kernel.shape == (64, 64, 3, 3)
    assert (kernel != 0).all()                      # no zero connection: a full 3x3 convolution of 64 x 64
    assert kernel.abs().min() > 1e-9 * kernel.abs().max()
    # ... with far fewer weights than that dense kernel: 9 C + C (K_2 + K_3 + K_4)
    weights = sum(conv.weight.numel() for conv in block.convs())
    assert weights == 9 * 64 + 64 * 12 and weights < kernel.numel() / 20


def test_a_non_complementary_permutation_fails_the_condition():
    block = IGCV2Block(16, 16, 1, (4, 4))
    assert complementary(block)
    block.chain[2] = Permute(1)                      # P_2 = identity: W_3 mixes the same digit again
    counts = path_counts(block)
    assert not complementary(block)
    assert (counts == 0).any() and (counts > 1).any()
    assert counts.sum() == 16 * 16                  # same number of paths, badly spread: 4 inputs x 4 paths each
    block.chain[2] = Permute(2)                      # a shuffle, but with the wrong group count
    assert not complementary(block)
    with pytest.raises(ValueError, match="complementary"):
        IGCV2Block(16, 16, 1, (2, 4))               # product 8 != 16 channels


def test_balance_condition_minimises_the_chain_size():
    assert balanced_group_sizes(64, 2) == (8, 8) and balanced_group_sizes(64, 3) == (4, 4, 4)
    assert balanced_group_sizes(128, 2) == (8, 16) and balanced_group_sizes(36, 1) == (36,)
    for c, parts in [(64, 2), (96, 2), (96, 3), (128, 3), (256, 4)]:
        best = balanced_group_sizes(c, parts)
        assert math.prod(best) == c
        assert sum(best) == min(sum(ks) for ks in factorizations(c, parts))
        # C (K_2 + ... + K_L) weights in the 1x1 chain; never below the continuous optimum (L-1) C^(1/(L-1))
        assert sum(best) >= parts * c ** (1 / parts) - 1e-9
    with pytest.raises(ValueError, match="complementary"):
        balanced_group_sizes(13, 2)                  # a prime width has no split


def test_block_shapes_identity_and_downsampling():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 8, 8)
    same = IGCV2Block(32, 32, 1, (4, 8)).eval()
    assert same.use_res and same(x).shape == x.shape
    down = IGCV2Block(32, 64, 2, (4, 8)).eval()
    assert not down.use_res and down(x).shape == (2, 64, 4, 4)


def test_task_network_forward_and_training_step():
    model = task_model(KEY, 1, (8, 8), 10)
    assert all(complementary(b) for b in model.blocks)
    forward_and_one_step(model, 1, (8, 8), 10)


@pytest.mark.slow
def test_task_network_at_fmnist_size_trains():
    forward_and_one_step(task_model(KEY, 1, (28, 28), 10), 1, (28, 28), 10)
