"""SqueezeNext: Hardware-Aware Neural Network Design.

Gholami, Kwon, Wu, Tai, Yue, Jin, Zhao, Keutzer (2018), arXiv:1803.10615 (CVPR 2018 Workshops).
Key: gholami2018squeezenext.
Implements the SqNxt block of Section 3 (Fig. 1 right, Fig. 2): a two-stage 1x1 squeeze (C -> C/2
-> C/4), a separable 3x1 then 1x3 convolution (C/4 -> C/2 -> C/2, the low-rank factorisation of a
3x3 filter), a 1x1 expansion to the block's output, and a residual connection (a 1x1 projection
where the shape changes); every convolution is followed by BN and ReLU. The first block of a stage
that downsamples uses no squeeze in its first 1x1 (stride 2, C -> C); a block whose input is wider
than its output squeezes by 4 first. The network is Section 4's 1.0-SqNxt-23: a 7x7/2 conv of 64
channels, a 3x3/2 max-pool, four stages of [6, 6, 8, 1] blocks with 32, 64, 128, 256 channels
(x the width multiplier, "1.0/1.5/2.0-SqNxt"), a final 1x1 conv to 128 channels (Section 4: the
"bottleneck before the fully connected layer"), global average pooling and a fully connected
classifier. ``blocks="v5"`` is the simulator-tuned 1.0-SqNxt-23v5 allocation [2, 4, 14, 1] (Fig. 8).
No depthwise convolution is used (the paper's hardware argument). No library has it: our own code.
Real: the architecture is physically what it is. Simulated: nothing.
Deviations: ``stem="small"`` replaces the 7x7/2 conv and the max-pool by a 3x3/1 conv for 8x8 and
28x28 inputs (total stride 8, not 32); task default width 0.25 (cost). The residual branch's last BN starts
at gamma = 0 (zero-init residual), which does not change the counts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.protocols import CompactMethod, MethodContext
from mcbench.methods.registry import register

STAGE_CHANNELS = (32, 64, 128, 256)
BLOCKS = {"23": (6, 6, 8, 1), "v5": (2, 4, 14, 1)}
STEM, HEAD = 64, 128


def conv_bn_relu(c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int = 1) -> nn.Sequential:
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    pad = (k[0] // 2, k[1] // 2)
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, pad, bias=True), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class SqNxtBlock(nn.Module):
    """1x1 squeeze (C/r), 1x1 squeeze (C/2r), 3x1 and 1x3 (C/r), 1x1 expand (out); r = 1, 2 or 4."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        r = 1 if stride == 2 else (4 if c_in > c_out else 2)
        a, b = c_in // r, c_in // (2 * r)
        self.branch = nn.Sequential(conv_bn_relu(c_in, a, 1, stride), conv_bn_relu(a, b, 1),
                                    conv_bn_relu(b, a, (3, 1)), conv_bn_relu(a, a, (1, 3)),
                                    conv_bn_relu(a, c_out, 1))
        nn.init.zeros_(self.branch[-1][1].weight)
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out
                         else conv_bn_relu(c_in, c_out, 1, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


class SqueezeNext(nn.Module):
    def __init__(self, num_classes: int, in_chans: int = 3, width: float = 1.0, blocks: str = "23",
                 stem: Literal["paper", "small"] = "paper") -> None:
        super().__init__()
        stem_c = int(STEM * width)
        if stem == "paper":
            self.stem = nn.Sequential(conv_bn_relu(in_chans, stem_c, 7, 2), nn.MaxPool2d(3, 2, ceil_mode=True))
        else:
            self.stem = conv_bn_relu(in_chans, stem_c, 3, 1)
        units, c_in = [], stem_c
        for s, (n, c) in enumerate(zip(BLOCKS[blocks], STAGE_CHANNELS)):
            c_out = int(c * width)
            for j in range(n):
                units.append(SqNxtBlock(c_in, c_out, 2 if (j == 0 and s > 0) else 1))
                c_in = c_out
        self.stages = nn.Sequential(*units)
        self.head = conv_bn_relu(c_in, int(HEAD * width), 1)
        self.fc = nn.Linear(int(HEAD * width), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.stages(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register(family="compact")
class gholami2018squeezenext(CompactMethod):
    @dataclass
    class Config:
        width: Annotated[float, Field(gt=0.0, le=2.0)] = 0.25       # "1.0/1.5/2.0-SqNxt" (Section 4)
        blocks: Literal["23", "v5"] = "23"                          # [6,6,8,1] or the v5 allocation [2,4,14,1]
        stem: Literal["paper", "small"] = "small"                   # "paper": 7x7/2 conv + 3x3/2 max-pool

    def build(self, ctx: MethodContext) -> nn.Module:
        c = self.config
        return SqueezeNext(ctx.num_classes, ctx.in_chans, c.width, c.blocks, c.stem)
