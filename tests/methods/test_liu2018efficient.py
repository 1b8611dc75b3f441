"""liu2018efficient: Winograd F(2x2,3x3) equals direct convolution; Winograd-ReLU layers, counted multiplications."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mcbench.benchmarks.archs import SmallCNN
from mcbench.methods.pruning.liu2018efficient import (to_winograd_relu, weight_transform,
                                                      winograd_conv, winograd_masks, winograd_ops)
from mcbench.methods.registry import REGISTRY


def test_registered():
    assert "liu2018efficient" in REGISTRY.keys()


def test_winograd_convolution_equals_direct_convolution_before_pruning():
    torch.manual_seed(0)
    for h, w in ((8, 8), (7, 5), (1, 3)):                              # even, odd and tiny maps
        x, g = torch.randn(2, 3, h, w, dtype=torch.float64), torch.randn(4, 3, 3, 3, dtype=torch.float64)
        torch.testing.assert_close(winograd_conv(x, weight_transform(g)), F.conv2d(x, g, padding=1))


def test_relu_moves_into_the_winograd_domain():
    torch.manual_seed(0)
    m = SmallCNN(1, 3, (4, 6, 8)).eval()
    names = to_winograd_relu(m)
    assert names == ["stage2.0", "stage3.0"]                           # the image-reading conv stays direct
    assert isinstance(m.stage1[2], nn.Identity) and isinstance(m.stage3[2], nn.ReLU)   # last ReLU feeds the GAP
    x = torch.randn(2, 6, 4, 4)
    layer = m.stage3[0]
    layer.relu_in = False
    lin = layer(x)
    layer.relu_in = True
    assert not torch.allclose(layer(x), lin)                            # ReLU on tiles is not a spatial ReLU


def test_pruned_multiplications_are_counted_in_the_winograd_domain():
    torch.manual_seed(0)
    m = SmallCNN(1, 3, (4, 6)).eval()
    to_winograd_relu(m)
    x = torch.randn(3, 1, 8, 8)
    dense = winograd_ops(m, x)
    # stage2 reads a 4x4 map: 2x2 tiles, 4 in channels, 6 out channels, 16 positions; direct: 16*6*4*9 per image
    assert dense["mults_winograd_dense"] == 3 * 4 * 4 * 16 * 6
    assert dense["macs_direct"] == 3 * 16 * 6 * 4 * 9
    masks = winograd_masks(m, 0.75)
    with torch.no_grad():
        m.stage2[0].weight.mul_(masks["stage2.0"])
    ops = winograd_ops(m, x)
    assert ops["mults_winograd_nonzero"] <= 0.25 * dense["mults_winograd_dense"] + 1e-9
    assert abs(float(masks["stage2.0"].float().mean()) - 0.25) < 0.01
