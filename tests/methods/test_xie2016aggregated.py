"""xie2016aggregated: grouped bottlenecks; Table 1's ResNet-50 and ResNeXt-50; the same-complexity control."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from compact_checks import forward_and_one_step, paper_count, task_model
from mcbench.benchmarks.complexity import paper_context
from mcbench.methods.compact.xie2016aggregated import AggregatedBottleneck, matching_resnet_width
from mcbench.methods.registry import REGISTRY

KEY = "xie2016aggregated"
IMAGENET = {"blocks": [3, 4, 6, 3], "outputs": [256, 512, 1024, 2048], "stem": 64, "imagenet": True}


def test_resnext50_and_resnet50_have_table_1s_complexity():
    """Table 1: ResNet-50 (1x64d) 25.5M params, 4.1 GFLOPs; ResNeXt-50 (32x4d) 25.0M, 4.2 GFLOPs (mult-adds)."""
    import torchvision

    resnext = paper_count(KEY, {**IMAGENET, "cardinality": 32, "width": 4}, (3, 224, 224))
    resnet = paper_count(KEY, {**IMAGENET, "cardinality": 1, "width": 64}, (3, 224, 224))
    for ours, (params, macs) in ((resnext, (25.0e6, 4.2e9)), (resnet, (25.5e6, 4.1e9))):
        assert abs(ours.params_count - params) / params < 0.02
        assert abs(ours.macs - macs) / macs < 0.02
    with torch.device("meta"):  # the same networks as torchvision's (stride in the 3x3 conv, as the paper)
        assert resnext.params_count == sum(p.numel() for p in torchvision.models.resnext50_32x4d().parameters())
        assert resnet.params_count == sum(p.numel() for p in torchvision.models.resnet50().parameters())


def test_block_is_a_grouped_bottleneck_of_cardinality_c():
    block = AggregatedBottleneck(256, 256, cardinality=32, width=4, stride=1)
    convs = [m for m in block.body if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(1, 1), (3, 3), (1, 1)]
    assert convs[1].groups == 32 and convs[1].in_channels == convs[1].out_channels == 128
    # Fig. 3(c) equals Fig. 3(a): the grouped 3x3 is C separate 4-channel paths
    x = torch.randn(1, 128, 5, 5)
    parts = [torch.nn.functional.conv2d(x[:, 4 * i:4 * i + 4], convs[1].weight[4 * i:4 * i + 4], padding=1)
             for i in range(32)]
    assert torch.allclose(convs[1](x), torch.cat(parts, 1), atol=1e-5)


def test_control_resnet_has_about_the_same_parameters():
    method = REGISTRY.create(KEY)
    ctx = dataclasses.replace(paper_context(1, (28, 28), 10), device=torch.device("cpu"))
    d = matching_resnet_width(lambda c, w: method._net(ctx, c, w), method.config.cardinality, method.config.width)
    nx = sum(p.numel() for p in method._net(ctx, method.config.cardinality, method.config.width).parameters())
    nr = sum(p.numel() for p in method._net(ctx, 1, d).parameters())
    assert abs(nx - nr) / nx < 0.05 and d > method.config.width


def test_task_network_forward_and_training_step():
    forward_and_one_step(task_model(KEY, 1, (8, 8), 10), 1, (8, 8), 10)
    forward_and_one_step(task_model(KEY, 1, (28, 28), 10), 1, (28, 28), 10)
