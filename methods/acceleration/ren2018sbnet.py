"""SBNet: Sparse Blocks Network for Fast Inference.

Ren, Pokrovsky, Yang, Urtasun (2018), arXiv:1801.02108 (CVPR 2018). Key: ren2018sbnet.
Implements Section 3: a computation mask is reduced to a list of active blocks (block-wise max
pooling of the mask, then thresholding, Section 3.1 "reduce mask"); "sparse gather" copies each
active block together with its halo (the receptive field of the convolution) into a dense batch
of small tiles; an ordinary dense convolution runs on the tiles with VALID padding; "sparse
scatter" writes (or, in a residual unit, adds) the results back (Section 3.2-3.3, Fig. 2-3). The
network is a residual CNN whose 3x3 conv-BN-ReLU-conv-BN residual branches run sparsely (Section
3.4: sparse residual units, inactive positions keep their input), with a mask taken from the input
image: a pixel is foreground when it is above its image's mean, a block is active when it holds
any foreground (the paper's masks come from a road map or a prior network; ours is the analogue
for centred objects on a blank background).
Real: the convolutions run only on the gathered active tiles (dense torch kernels on fewer pixels),
so measured latency shows what block sparsity buys at this resolution, including where gather and
scatter overheads make it slower. Simulated: nothing. ``count_ops`` reports the MACs really
computed (``macs_active``) and the dense equivalent (``macs_dense``), averaged over test images.
Deviations: gather/scatter are torch ``unfold``/indexing/``fold``, not the paper's fused CUDA
kernels; BN statistics are computed over active tiles only (as in the paper's tiles) during
training; the residual branch's last BN starts with gamma = 0 (zero-init residual); the transition layers between stages (1x1 conv + 2x2 max-pool) are dense.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.protocols import AccelerationMethod, Compressed, MethodContext
from mcbench.methods.registry import register


def reduce_mask(pixel_mask: torch.Tensor, block: int) -> torch.Tensor:
    """(N, 1, H, W) bool -> (N, ceil(H/b), ceil(W/b)) bool: a block is active if any pixel in it is."""
    h, w = pixel_mask.shape[-2:]
    padded = F.pad(pixel_mask.float(), (0, -w % block, 0, -h % block))
    return F.max_pool2d(padded, block).squeeze(1) > 0


def input_mask(x: torch.Tensor) -> torch.Tensor:
    """Foreground pixels: above the image's mean over all its channels and pixels."""
    return (x.mean(1, keepdim=True) > x.mean(dim=(1, 2, 3), keepdim=True))


def sparse_gather(x: torch.Tensor, active: torch.Tensor, block: int, halo: int) -> tuple[torch.Tensor, tuple]:
    """Tiles (A, C, b + 2 halo, b + 2 halo) of the active blocks, zero padding outside the image."""
    n, c, h, w = x.shape
    hp, wp = h + (-h % block), w + (-w % block)
    padded = F.pad(x, (halo, halo + wp - w, halo, halo + hp - h))
    tile = block + 2 * halo
    cols = F.unfold(padded, tile, stride=block)                    # (N, C*tile*tile, L)
    flat = active.reshape(n, -1)                                    # (N, L), L = (hp/b) * (wp/b)
    tiles = cols.transpose(1, 2)[flat]                              # (A, C*tile*tile)
    return tiles.reshape(-1, c, tile, tile), (n, h, w, hp, wp, flat)


def sparse_scatter(tiles: torch.Tensor, layout: tuple, block: int, base: torch.Tensor | None = None) -> torch.Tensor:
    """Write (A, C, b, b) tiles back to their blocks; zeros elsewhere, or added onto ``base``."""
    n, h, w, hp, wp, flat = layout
    c = tiles.shape[1]
    cols = tiles.new_zeros(n, flat.shape[1], c * block * block)
    cols[flat] = tiles.reshape(tiles.shape[0], -1)
    out = F.fold(cols.transpose(1, 2), (hp, wp), block, stride=block)[..., :h, :w]
    return out if base is None else base + out


class SparseResidualUnit(nn.Module):
    """x + f(x) on active blocks, x elsewhere; f = conv3x3-BN-ReLU-conv3x3-BN on gathered tiles."""

    def __init__(self, channels: int, block: int) -> None:
        super().__init__()
        self.block = block
        self.conv1 = nn.Conv2d(channels, channels, 3, bias=False)   # VALID: the halo supplies the border
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn2.weight)   # the residual branch starts at zero (Goyal et al. 2017)

    def branch(self, tiles: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """``inside`` (A, 1, b+2, b+2) is 1 where conv1's output lies in the image: outside it the dense
        network's conv2 sees zero padding, not BN(conv1(padding)), so the halo is zeroed there."""
        h = F.relu(self.bn1(self.conv1(tiles))) * inside
        return self.bn2(self.conv2(h))

    def forward(self, x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        if not bool(active.any()):   # nothing to compute: every position keeps its input
            return F.relu(x)
        tiles, layout = sparse_gather(x, active, self.block, halo=2)  # two 3x3 convs: halo 2
        inside, _ = sparse_gather(x.new_ones(x.shape[0], 1, *x.shape[-2:]), active, self.block, halo=1)
        return F.relu(sparse_scatter(self.branch(tiles, inside), layout, self.block, base=x))


class SBNet(nn.Module):
    def __init__(self, num_classes: int, in_chans: int, widths: tuple[int, ...], block: int,
                 units_per_stage: int = 1) -> None:
        super().__init__()
        self.block = block
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for i, w in enumerate(widths):
            self.stages.append(nn.ModuleList([SparseResidualUnit(w, block) for _ in range(units_per_stage)]))
            if i + 1 < len(widths):
                self.transitions.append(nn.Sequential(nn.Conv2d(w, widths[i + 1], 1, bias=False),
                                                      nn.BatchNorm2d(widths[i + 1]), nn.ReLU(inplace=True)))
        self.fc = nn.Linear(widths[-1], num_classes)

    def masks(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The block mask of every stage, from the input's pixel mask max-pooled to the stage's size."""
        pixel, out = input_mask(x), []
        for i in range(len(self.stages)):
            out.append(reduce_mask(pixel, self.block))
            pixel = F.max_pool2d(pixel.float(), 2, ceil_mode=True) > 0
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks = self.masks(x)
        x = self.stem(x)
        for i, units in enumerate(self.stages):
            for unit in units:
                x = unit(x, masks[i])
            if i < len(self.transitions):
                x = F.max_pool2d(self.transitions[i](x), 2, ceil_mode=True)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def count_block_macs(model: SBNet, x: torch.Tensor) -> dict[str, float]:
    """MACs of the sparse residual convolutions: computed on active tiles vs dense (totals over the batch)."""
    masks, active, dense = model.masks(x), 0.0, 0.0
    h, w = x.shape[-2:]
    for i, units in enumerate(model.stages):
        n_active = float(masks[i].sum())
        n_blocks = masks[i].numel()
        for unit in units:
            c, b = unit.conv1.in_channels, model.block
            per_tile = 9 * c * c * ((b + 2) ** 2 + b ** 2)          # conv1 on (b+2)^2 outputs, conv2 on b^2
            active += n_active * per_tile
            dense += x.shape[0] * 2 * 9 * c * c * h * w
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return {"macs_active_sparse_convs": active, "macs_dense_sparse_convs": dense,
            "active_block_fraction": float(sum(m.sum() for m in masks) / sum(m.numel() for m in masks)) * x.shape[0]}


@register(family="acceleration")
class ren2018sbnet(AccelerationMethod):
    real = True
    note = ("residual convolutions run as dense kernels on gathered active blocks only (torch unfold/fold "
            "gather-scatter); mask from the input image")

    @dataclass
    class Config:
        block: Annotated[int, Field(ge=2, le=32)] = 4           # output block side (Section 3.1)
        widths: tuple[int, ...] = (16, 32, 64)                  # task default: cheap (the paper setting: 32-128)
        units_per_stage: Annotated[int, Field(ge=1, le=4)] = 1

    def build(self, ctx: MethodContext) -> nn.Module:
        return SBNet(ctx.num_classes, ctx.in_chans, tuple(self.config.widths), self.config.block,
                     self.config.units_per_stage)

    def apply(self, ctx: MethodContext) -> Compressed:
        out = super().apply(ctx)
        out.count_ops = lambda model, x: count_block_macs(model, x)
        return out
