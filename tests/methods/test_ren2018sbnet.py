"""ren2018sbnet: sparse gather -> dense conv -> scatter equals the dense convolution on active blocks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compact_checks import forward_and_one_step, task_model
from mcbench.methods.acceleration.ren2018sbnet import (SparseResidualUnit, count_block_macs, input_mask, reduce_mask,
                                                       sparse_gather, sparse_scatter)

KEY = "ren2018sbnet"


def _mask(n, hb, wb, p=0.4, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(n, hb, wb, generator=g) < p
    m[0, 0, 0] = True
    return m


def test_sparse_conv_equals_dense_conv_on_active_blocks_and_is_zero_elsewhere():
    torch.manual_seed(0)
    x, weight, b = torch.randn(2, 5, 14, 14), torch.randn(7, 5, 3, 3), 4   # 14 is not a multiple of 4
    active = _mask(2, 4, 4)
    tiles, layout = sparse_gather(x, active, b, halo=1)
    assert tiles.shape == (int(active.sum()), 5, 6, 6)
    out = sparse_scatter(F.conv2d(tiles, weight), layout, b)   # VALID conv on the tiles
    dense = F.conv2d(x, weight, padding=1)
    pixel = active.repeat_interleave(b, 1).repeat_interleave(b, 2)[:, :14, :14].unsqueeze(1).expand_as(dense)
    assert torch.allclose(out[pixel], dense[pixel], atol=1e-5)
    assert (out[~pixel] == 0).all()


def test_sparse_residual_unit_equals_its_dense_branch_on_active_blocks_and_keeps_the_input_elsewhere():
    torch.manual_seed(0)
    unit = SparseResidualUnit(6, 4).eval()
    for bn in (unit.bn1, unit.bn2):   # non-trivial BN (gamma starts at 0 in bn2): the branch must matter
        bn.weight.data.uniform_(0.5, 1.5), bn.bias.data.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.2, 0.2), bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 6, 8, 8)
    active = torch.tensor([[[True, False], [False, True]]])
    with torch.no_grad():
        y = unit(x, active)
        h = F.relu(unit.bn1(F.conv2d(x, unit.conv1.weight, padding=1)))
        dense = F.relu(x + unit.bn2(F.conv2d(h, unit.conv2.weight, padding=1)))
    assert torch.allclose(y[..., :4, :4], dense[..., :4, :4], atol=1e-5)
    assert torch.allclose(y[..., 4:, 4:], dense[..., 4:, 4:], atol=1e-5)
    assert torch.allclose(y[..., :4, 4:], F.relu(x[..., :4, 4:]))  # inactive: the input passes through


def test_reduce_mask_marks_blocks_with_any_active_pixel():
    pixel = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    pixel[0, 0, 5, 1] = True
    assert reduce_mask(pixel, 4).tolist() == [[[False, False], [True, False]]]
    img = torch.zeros(1, 1, 8, 8)
    img[..., 2:4, 2:4] = 1.0
    assert reduce_mask(input_mask(img), 4).tolist() == [[[True, False], [False, False]]]


def test_block_macs_fall_with_block_sparsity_and_exceed_dense_when_everything_is_active():
    model = task_model(KEY, 1, (32, 32), 10).eval()
    sparse = torch.zeros(4, 1, 32, 32)
    sparse[..., 2:6, 2:6] = 1.0                       # a small object: one block active per stage
    dense_img = torch.rand(4, 1, 32, 32) + torch.linspace(0, 1, 32)  # foreground all over
    dense_img[..., ::2, :] += 2.0                                     # every block holds a bright row
    few, all_ = count_block_macs(model, sparse), count_block_macs(model, dense_img)
    assert few["macs_dense_sparse_convs"] == all_["macs_dense_sparse_convs"]
    assert few["macs_active_sparse_convs"] < 0.3 * few["macs_dense_sparse_convs"]
    assert all_["active_block_fraction"] == 4.0       # every block of the 4 images
    # the halo recomputation costs more than the dense convolution when every block is active
    assert all_["macs_active_sparse_convs"] > all_["macs_dense_sparse_convs"]
    blank = torch.zeros(4, 1, 32, 32)
    assert count_block_macs(model, blank)["macs_active_sparse_convs"] == 0  # nothing above the mean


def test_digits_block_counts_are_per_image_fractions(digits):
    model = task_model(KEY, 1, (8, 8), 10).eval()
    ops = count_block_macs(model, digits.x_test[:32])
    assert 0 < ops["active_block_fraction"] <= 32
    assert ops["macs_active_sparse_convs"] > 0


def test_task_network_forward_and_training_step():
    forward_and_one_step(task_model(KEY, 1, (8, 8), 10), 1, (8, 8), 10)


@pytest.mark.slow
def test_task_network_at_fmnist_size_trains():
    forward_and_one_step(task_model(KEY, 1, (28, 28), 10), 1, (28, 28), 10)
