"""IGCV2: Interleaved Structured Sparse Convolutional Neural Networks.

Xie, Wang, Zhang, Lai, Hong, Qi (2018), arXiv:1804.06202 (CVPR 2018). Key: xie2018igcv2.
Implements the block of Section 3 (Fig. 2): a convolution written as a product of structured
sparse kernels, x' = P_L W_L P_{L-1} W_{L-1} ... P_2 W_2 W_1 x, where W_1 is a channel-wise
(depthwise) 3x3 convolution and W_2 ... W_L are group 1x1 convolutions with K_l channels per
branch, each followed by a permutation P_l. The complementary condition (Section 3.2): every
output channel is connected to every input channel by exactly one path; with K_2 K_3 ... K_L = C
and P_l the interleave that moves the channel-index digit just mixed by W_l to the slowest
position (a mixed-radix digit rotation; P_L restores the input order) the composed kernel is dense
and every (output, input) pair has one path. The balance condition (Section 3.3): the 1x1 chain
holds C (K_2 + ... + K_L) weights, smallest when the K_l are equal, K_l = C^(1/(L-1));
``balanced_group_sizes`` picks the integer factorisation of C with the smallest sum.
Each kernel is followed by BN with no nonlinearity inside the chain (so the block is one dense
linear convolution before its ReLU, the paper's reading); the identity is added where shapes allow.
The network: a 3x3 stem, three stages of IGCV2 blocks (the first of stages 2 and 3 at stride 2
doubling the width in its last group convolution, which keeps one path per pair), global pooling and
a linear classifier. Nothing in timm or torchvision builds IGCV2: our own code.
Real: the architecture is physically what it is (depthwise and grouped convs run as torch kernels).
Simulated: nothing.
Deviations: the paper's CIFAR and ImageNet tables (stage widths, block counts, IGCV2* variants)
were not available to us, so the stage widths and depths are ours (task default widths 32-64-128,
2 blocks per stage, L = 3); no complexity figure of the paper is compared. Identity shortcuts and
the post-block ReLU follow IGCV1's "IGC + BN + ReLU" with identity mapping.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.protocols import CompactMethod, MethodContext
from mcbench.methods.registry import register


def interleave(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Channel permutation (g, n) -> (n, g): the fastest channel digit (size n) becomes the slowest."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class Permute(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return interleave(x, self.groups) if self.groups > 1 else x


def factorizations(c: int, parts: int, smallest: int = 1) -> list[tuple[int, ...]]:
    """Every non-decreasing tuple of ``parts`` integers >= ``smallest`` (and > 1 unless c = 1) whose product is c."""
    if parts == 1:
        return [(c,)] if c >= smallest else []
    out = []
    for k in range(max(2, smallest), math.isqrt(c) + 1):
        if c % k == 0:
            out += [(k, *rest) for rest in factorizations(c // k, parts - 1, k)]
    return out


def balanced_group_sizes(c: int, parts: int) -> tuple[int, ...]:
    """Balance condition (Section 3.3): K_2 ... K_L with product C and the smallest sum C (K_2 + ... + K_L)."""
    if parts < 1:
        raise ValueError(f"IGCV2 needs at least one group 1x1 convolution, got {parts}")
    if parts == 1:
        return (c,)
    options = factorizations(c, parts)
    if not options:
        raise ValueError(f"{c} channels cannot be split into {parts} group sizes > 1 whose product is {c} "
                         f"(complementary condition); pick a width with more factors")
    return min(options, key=lambda ks: (sum(ks), ks))


class IGCV2Block(nn.Module):
    """W_1: channel-wise 3x3 (stride s); W_l: group 1x1 with K_l channels per branch, then P_l; BN after each."""

    def __init__(self, c_in: int, c_out: int, stride: int, group_sizes: tuple[int, ...]) -> None:
        super().__init__()
        if math.prod(group_sizes) != c_in:
            raise ValueError(f"complementary condition: product of group sizes {group_sizes} must equal {c_in}")
        if c_out % (c_in // group_sizes[-1]):
            raise ValueError(f"{c_out} output channels do not split over {c_in // group_sizes[-1]} branches")
        self.group_sizes = tuple(group_sizes)
        self.use_res = stride == 1 and c_in == c_out
        self.dw = nn.Sequential(nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False), nn.BatchNorm2d(c_in))
        chain: list[nn.Module] = []
        for i, k in enumerate(group_sizes):
            out = c_out if i == len(group_sizes) - 1 else c_in
            branches = c_in // k
            chain += [nn.Conv2d(c_in, out, 1, groups=branches, bias=False), nn.BatchNorm2d(out), Permute(branches)]
        self.chain = nn.Sequential(*chain)

    def convs(self) -> list[nn.Conv2d]:
        return [self.dw[0]] + [m for m in self.chain if isinstance(m, nn.Conv2d)]

    def permutations(self) -> list[Permute]:
        return [m for m in self.chain if isinstance(m, Permute)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.chain(self.dw(x))
        return F.relu(x + y if self.use_res else y)


@torch.no_grad()
def path_counts(block: IGCV2Block) -> torch.Tensor:
    """(out, in) integer matrix: the number of paths from each input channel to each output channel.

    Every kernel is replaced by its support (all ones) and BN by the identity, so the chain computes
    the product of the 0/1 connection matrices: P_L B_L ... P_2 B_2 B_1 (Section 3.2)."""
    c_in = block.dw[0].in_channels
    y = torch.eye(c_in, dtype=torch.float64).reshape(c_in, c_in, 1, 1)
    dw = block.dw[0]
    y = F.conv2d(y, torch.ones_like(dw.weight, dtype=torch.float64), None, 1, dw.padding, 1, dw.groups)
    for m in block.chain:
        if isinstance(m, nn.Conv2d):
            y = F.conv2d(y, torch.ones_like(m.weight, dtype=torch.float64), None, 1, 0, 1, m.groups)
        elif isinstance(m, Permute):
            y = m(y)
    return y[..., 0, 0].T.round().long()


def complementary(block: IGCV2Block) -> bool:
    """The complementary condition: exactly one path between every input and every output channel."""
    return bool((path_counts(block) == 1).all())


class IGCV2Net(nn.Module):
    def __init__(self, num_classes: int, in_chans: int, widths: tuple[int, ...], blocks: int, chain: int,
                 stem_stride: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, stem_stride, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        layers, c_in = [], widths[0]
        for s, c_out in enumerate(widths):
            for j in range(blocks):
                stride = 2 if s > 0 and j == 0 else 1
                layers.append(IGCV2Block(c_in, c_out, stride, balanced_group_sizes(c_in, chain - 1)))
                c_in = c_out
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register(family="compact")
class xie2018igcv2(CompactMethod):
    @dataclass
    class Config:
        widths: tuple[int, ...] = (32, 64, 128)      # stage widths C (each a product of L-1 sizes)
        blocks: Annotated[int, Field(ge=1, le=16)] = 2               # IGCV2 blocks per stage
        chain: Annotated[int, Field(ge=2, le=6)] = 3                 # L: the 3x3 channel-wise + (L-1) group 1x1
        stem_stride: Annotated[int, Field(ge=1, le=2)] = 1

    def build(self, ctx: MethodContext) -> nn.Module:
        c = self.config
        return IGCV2Net(ctx.num_classes, ctx.in_chans, tuple(c.widths), c.blocks, c.chain, c.stem_stride)
