"""Aggregated Residual Transformations for Deep Neural Networks.

Xie, Girshick, Dollar, Tu, He (2016), arXiv:1611.05431 (CVPR 2017). Key: xie2016aggregated.
Implements the ResNeXt bottleneck in the grouped-convolution form of Fig. 3(c): 1x1 conv to
C*d channels, 3x3 grouped conv with C groups (cardinality C, bottleneck width d), 1x1 conv to the
block's output, BN after each conv, ReLU after the addition; the template rules of Section 3.1
(blocks of a stage share hyper-parameters; each downsampling halves the map, doubles the width;
stride 2 in the 3x3 conv of a stage's first block; projection shortcuts when the shape changes).
The ImageNet configurations of Table 1 (``imagenet=True``): ResNet-50 (C=1, d=64) and
ResNeXt-50 (C=32, d=4), stem 7x7/2 + 3x3/2 max-pool, stages of (3, 4, 6, 3) blocks, outputs
256-2048. The task version follows the CIFAR design of Section 5.3 (3x3 stem, three stages) at
task size. ``controls``: the same-complexity ResNet (C=1 with d chosen so that the parameters
match, as the paper compares at preserved complexity, Table 2-3) is trained under the same recipe.
Real: grouped convolutions really run (torch's grouped conv kernel). Simulated: nothing.
Deviations: the task network is much smaller than ResNeXt-29 (Section 5.3: 34.4M parameters);
defaults C=8, d=4, stage outputs (64, 128, 256), one block per stage, first stage at stride 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from mcbench.methods.flows.compact import train_from_scratch
from mcbench.methods.protocols import CompactMethod, Compressed, MethodContext
from mcbench.methods.registry import register


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]


class AggregatedBottleneck(nn.Module):
    """Fig. 3(c): 1x1 (C*d) -> 3x3 grouped (C groups) -> 1x1 (c_out), plus the shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, cardinality: int, width: int, stride: int) -> None:
        super().__init__()
        inner = cardinality * width
        self.body = nn.Sequential(*_conv_bn(c_in, inner, 1), nn.ReLU(inplace=True),
                                  *_conv_bn(inner, inner, 3, stride, groups=cardinality), nn.ReLU(inplace=True),
                                  *_conv_bn(inner, c_out, 1))
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out
                         else nn.Sequential(*_conv_bn(c_in, c_out, 1, stride)))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNeXt(nn.Module):
    """Stages of aggregated bottlenecks; stage i has output ``outputs[i]`` and inner width C*d*2^i."""

    def __init__(self, num_classes: int, in_chans: int, cardinality: int, width: int, blocks: tuple[int, ...],
                 outputs: tuple[int, ...], stem: int, imagenet: bool, first_stride: int = 1) -> None:
        super().__init__()
        if imagenet:
            self.stem = nn.Sequential(nn.Conv2d(in_chans, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(*_conv_bn(in_chans, stem, 3), nn.ReLU(inplace=True))
        layers, c_in = [], stem
        for i, (n, c_out) in enumerate(zip(blocks, outputs)):
            for j in range(n):
                stride = (first_stride if i == 0 else 2) if j == 0 else 1
                layers.append(AggregatedBottleneck(c_in, c_out, cardinality, width * 2 ** i, stride))
                c_in = c_out
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def params_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matching_resnet_width(build, cardinality: int, width: int) -> int:
    """Bottleneck width d' of the C=1 network whose parameter count is closest to the C x d one
    (the paper compares ResNeXt and ResNet at preserved complexity, Section 3.3, Table 2)."""
    with torch.device("meta"):
        target = params_count(build(cardinality, width))
        return min(range(1, 2 * cardinality * width + 1), key=lambda d: abs(params_count(build(1, d)) - target))


@register(family="compact")
class xie2016aggregated(CompactMethod):
    @dataclass
    class Config:
        cardinality: Annotated[int, Field(ge=1, le=64)] = 8      # C
        width: Annotated[int, Field(ge=1, le=256)] = 4            # d (bottleneck width per group, first stage)
        blocks: tuple[int, ...] = (1, 1, 1)                       # blocks per stage
        outputs: tuple[int, ...] = (64, 128, 256)                 # stage output widths
        stem: Annotated[int, Field(ge=1)] = 32
        imagenet: bool = False                                    # True: Table 1's 7x7/2 stem + max-pool
        control: bool = True                                      # also train the same-complexity ResNet (C=1)

    def _net(self, ctx: MethodContext, cardinality: int, width: int) -> ResNeXt:
        c = self.config
        if len(c.blocks) != len(c.outputs):
            raise ValueError(f"blocks {c.blocks} and outputs {c.outputs} need one entry per stage")
        return ResNeXt(ctx.num_classes, ctx.in_chans, cardinality, width, tuple(c.blocks), tuple(c.outputs), c.stem,
                       c.imagenet, first_stride=1)

    def build(self, ctx: MethodContext) -> nn.Module:
        return self._net(ctx, self.config.cardinality, self.config.width)

    def apply(self, ctx: MethodContext) -> Compressed:
        out = train_from_scratch(ctx, self.build(ctx), note=f"ResNeXt {self.config.cardinality}x{self.config.width}d "
                                                            "trained from scratch (grouped convolutions)")
        if self.config.control and self.config.cardinality > 1:
            d = matching_resnet_width(lambda c, w: self._net(ctx, c, w), self.config.cardinality, self.config.width)
            out.controls["resnet-same-complexity"] = train_from_scratch(
                ctx, self._net(ctx, 1, d), note=f"same-complexity ResNet (C=1, d={d}) under the same recipe")
        return out
