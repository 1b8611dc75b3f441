"""IGCV3: Interleaved Low-Rank Group Convolutions for Efficient Deep Neural Networks.

Sun, Li, Liu, Wang (2018), arXiv:1806.00178 (BMVC 2018). Key: sun2018igcv3.
Implements the IGCV3 block of Section 3 (Fig. 1): MobileNetV2's inverted bottleneck with both
dense 1x1 convolutions replaced by low-rank *group* 1x1 convolutions (G1 = G3 = 2 groups), an
interleaving permutation P1 after the first (so each channel-wise 3x3 channel feeds the second
group convolution's groups from every first-layer group) and P2 after the second, a channel-wise
(depthwise) 3x3 in between, ReLU6 after the first two, a linear last layer, and the identity
shortcut where the shape allows. The permutations are channel shuffles: together they satisfy the
loose complementary condition (Section 3.2: the composed kernel W = P2 W3 P1 W2 W1 is dense: every
output channel is reached from every input channel). The network is IGCV3-D, the MobileNetV2
skeleton (Table 2 of Sandler et al.) with twice the blocks in the middle stages ([1, 4, 6, 8, 6, 6,
1] blocks of 16, 24, 32, 64, 96, 160, 320 channels, expansion 6) and a width multiplier.
timm has MobileNetV2 but no grouped pointwise blocks with permutations: our own code.
Real: the architecture is physically what it is. Simulated: nothing.
Deviations: task default width 0.35 (cost) with the paper's stride-2 stem (1.9M MACs at 28x28; ``stem_stride=1``
keeps more resolution at 4x the MACs, as the paper setting does). The
official code (homles11/IGCV3) is followed for the placement of the two permutations.
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

# (expansion t, channels c, blocks n, stride s): MobileNetV2's Table 2 with "D"eeper middle stages
IGCV3_D = ((1, 16, 1, 1), (6, 24, 4, 2), (6, 32, 6, 2), (6, 64, 8, 2), (6, 96, 6, 1), (6, 160, 6, 2), (6, 320, 1, 1))
MOBILENETV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def interleave(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Channel permutation: (g, n) -> (n, g). Output block j of size g holds channel j of every group."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class Interleave(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return interleave(x, self.groups) if self.groups > 1 else x


def _make_divisible(c: float, divisor: int = 8) -> int:
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * c else new


class IGCV3Block(nn.Module):
    """gconv1x1 (G1) -> P1 -> dw3x3 -> gconv1x1 (G3, linear) -> P2, + identity where shapes allow."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int, groups: int = 2) -> None:
        super().__init__()
        mid = c_in * expansion
        self.use_res = stride == 1 and c_in == c_out
        self.pw1 = nn.Sequential(nn.Conv2d(c_in, mid, 1, groups=groups, bias=False), nn.BatchNorm2d(mid),
                                 nn.ReLU6(inplace=True))
        self.p1 = Interleave(groups)
        self.dw = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
                                nn.ReLU6(inplace=True))
        self.pw2 = nn.Sequential(nn.Conv2d(mid, c_out, 1, groups=groups, bias=False), nn.BatchNorm2d(c_out))
        self.p2 = Interleave(c_out // groups)   # the inverse of an interleave by `groups`: back to channel order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.p2(self.pw2(self.dw(self.p1(self.pw1(x)))))
        return x + y if self.use_res else y


class IGCV3(nn.Module):
    def __init__(self, num_classes: int, in_chans: int = 3, width: float = 1.0,
                 setting: tuple = IGCV3_D, stem_stride: int = 2, groups: int = 2) -> None:
        super().__init__()
        stem_c = _make_divisible(32 * width)
        self.stem = nn.Sequential(nn.Conv2d(in_chans, stem_c, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(stem_c),
                                  nn.ReLU6(inplace=True))
        blocks, c_in = [], stem_c
        for t, c, n, s in setting:
            c_out = _make_divisible(c * width)
            for j in range(n):
                blocks.append(IGCV3Block(c_in, c_out, s if j == 0 else 1, t, groups))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        head = _make_divisible(1280 * max(1.0, width))
        self.head = nn.Sequential(nn.Conv2d(c_in, head, 1, bias=False), nn.BatchNorm2d(head), nn.ReLU6(inplace=True))
        self.fc = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register(family="compact")
class sun2018igcv3(CompactMethod):
    @dataclass
    class Config:
        width: Annotated[float, Field(gt=0.0, le=2.0)] = 0.35      # width multiplier (Table 4: 0.5, 0.7, 1.0)
        depth: Literal["D", "mobilenetv2"] = "D"                  # IGCV3-D blocks, or MobileNetV2's counts
        stem_stride: Literal[1, 2] = 2                             # 2 as in the paper (and cheap); 1 for 28x28 detail

    def build(self, ctx: MethodContext) -> nn.Module:
        c = self.config
        setting = IGCV3_D if c.depth == "D" else MOBILENETV2
        return IGCV3(ctx.num_classes, ctx.in_chans, c.width, setting, c.stem_stride)
