"""ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices.

Zhang, Zhou, Lin, Sun (2017), arXiv:1707.01083 (CVPR 2018). Key: zhang2017shufflenet.
Implements the channel shuffle of Section 3.1 (g groups of n channels: reshape to (g, n),
transpose, flatten, so that the next group convolution's every group sees every previous group)
and the ShuffleNet unit of Fig. 2(b, c): 1x1 group conv (bottleneck = 1/4 of the unit's output),
BN, ReLU, channel shuffle, 3x3 depthwise conv (stride 1 or 2), BN, 1x1 group conv, BN; stride 1
adds the identity, stride 2 concatenates a 3x3/2 average-pooled shortcut; ReLU after the merge.
The network is Table 1: conv1 (24, 3x3/2), 3x3/2 max-pool, stages 2-4 of 4, 8, 4 units (the
first of each at stride 2), output channels per group count g in {1, 2, 3, 4, 8} (144-1536), global
pooling and a fully connected classifier; ``scale`` is the channel multiplier "ShuffleNet s x"
(Section 4.1.1: s^2 times the complexity). Stage 2's first 1x1 conv is not grouped (its input has
only 24 channels, Section 3.3). torchvision has only ShuffleNet v2, so this is our own.
Real: the architecture is what it is (grouped and depthwise convs run as torch kernels). Simulated: nothing.
Deviations: the last BN of each stride-1 unit starts with gamma = 0 (zero-init residual, Goyal et
al. 2017; with the paper's default init the 16 identity sums blow the features up and SGD at lr 0.05
diverges); ``stem="small"`` makes conv1 stride 1 and drops the max-pool for 8x8 and 28x28
inputs (total stride 8, not 32). Task defaults: g = 3, scale 0.25 (Table 2's smallest; keeps the default leaderboard cheap).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.protocols import CompactMethod, MethodContext
from mcbench.methods.registry import register

STAGE_OUT = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}   # Table 1: stage 2 output channels (x2, x4 later)
STAGE_UNITS = (4, 8, 4)
STEM = 24


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Section 3.1: (N, g*n, H, W) -> reshape (N, g, n, H, W) -> transpose to (N, n, g, H, W) -> flatten."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, c_in: int, c_out: int, groups: int, stride: int, group_first: bool = True) -> None:
        super().__init__()
        self.stride, self.groups = stride, groups
        branch_out = c_out - c_in if stride == 2 else c_out   # stride 2: concat with the pooled input
        mid = c_out // 4
        g1 = groups if group_first else 1
        self.gconv1 = nn.Sequential(nn.Conv2d(c_in, mid, 1, groups=g1, bias=False), nn.BatchNorm2d(mid),
                                    nn.ReLU(inplace=True))
        self.shuffle_groups = g1 if g1 > 1 else 1
        self.dwconv = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid))
        self.gconv2 = nn.Sequential(nn.Conv2d(mid, branch_out, 1, groups=groups, bias=False),
                                    nn.BatchNorm2d(branch_out))
        if stride == 1:   # residual branch starts at zero (Goyal et al. 2017): 16 identity sums stay O(1)
            nn.init.zeros_(self.gconv2[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gconv1(x)
        if self.shuffle_groups > 1:
            y = channel_shuffle(y, self.shuffle_groups)
        y = self.gconv2(self.dwconv(y))
        if self.stride == 2:
            return F.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), y], dim=1))
        return F.relu(x + y)


def _round_to(c: float, multiple: int) -> int:
    return max(multiple, int(round(c / multiple)) * multiple)


class ShuffleNetV1(nn.Module):
    def __init__(self, num_classes: int, in_chans: int = 3, groups: int = 3, scale: float = 1.0,
                 stem: Literal["paper", "small"] = "paper") -> None:
        super().__init__()
        if groups not in STAGE_OUT:
            raise ValueError(f"groups must be one of {sorted(STAGE_OUT)} (Table 1), got {groups}")
        # the bottleneck (1/4 of the output) must split into g groups: round to a multiple of 4g
        outs = [_round_to(STAGE_OUT[groups] * 2 ** i * scale, 4 * groups) for i in range(3)]
        # conv1 keeps 24 channels at scale >= 1; below, a multiple of 4 and g (the first unit concatenates it)
        stem_c = STEM if scale >= 1 else math.lcm(4, groups) * math.ceil(STEM * scale / math.lcm(4, groups))
        stride = 2 if stem == "paper" else 1
        layers: list[nn.Module] = [nn.Conv2d(in_chans, stem_c, 3, stride, 1, bias=False), nn.BatchNorm2d(stem_c),
                                   nn.ReLU(inplace=True)]
        if stem == "paper":
            layers.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*layers)
        units, c_in = [], stem_c
        for s, (n, c_out) in enumerate(zip(STAGE_UNITS, outs)):
            for j in range(n):
                units.append(ShuffleUnit(c_in, c_out, groups, 2 if j == 0 else 1, group_first=not (s == 0 and j == 0)))
                c_in = c_out
        self.stages = nn.Sequential(*units)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


@register(family="compact")
class zhang2017shufflenet(CompactMethod):
    @dataclass
    class Config:
        groups: Literal[1, 2, 3, 4, 8] = 3                            # g (Table 1)
        scale: Annotated[float, Field(gt=0.0, le=2.0)] = 0.25         # "ShuffleNet s x" (Table 2: 1, 0.5, 0.25)
        stem: Literal["paper", "small"] = "small"                     # "paper": conv1 stride 2 + max-pool

    def build(self, ctx: MethodContext) -> nn.Module:
        c = self.config
        return ShuffleNetV1(ctx.num_classes, ctx.in_chans, c.groups, c.scale, c.stem)
