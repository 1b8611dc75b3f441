"""GhostNet: More Features from Cheap Operations.

Han, Wang, Tian, Guo, Xu, Xu (2019), arXiv:1911.11907 (CVPR 2020). Key: han2019ghostnet.
Implements the Ghost module of Section 3.1: an ordinary k x k convolution makes m = n / s intrinsic
feature maps (Eq. 2), a cheap linear operation (a d x d depthwise convolution) makes s - 1 ghosts of
each (Eq. 3), and the identity keeps the intrinsic maps; the n outputs are their concatenation,
at about 1/s the parameters and FLOPs of the n-output convolution (Eq. 4-5). ``network="ghost-task"``
is the paper's CIFAR-10 experiment (Section 4.1: Ghost-VGG-16, Ghost-ResNet-56) on our task: every
convolution of the task's baseline CNN replaced by a Ghost module (s = 2, d = 3), compared
with that baseline. ``network="ghostnet_*"`` is GhostNet of Table 7 (Ghost bottlenecks, Section 3.2)
through timm (``pretrained=False``) for the ImageNet complexity check.
Real: the Ghost version is physically smaller (about half the conv weights and MACs). Simulated: nothing.
Deviations: in the task network the Ghost module is linear (BN and ReLU are the task CNN's, after
the module); the official code puts BN (+ ReLU) after the primary conv and after the cheap
operation as well. A layer with fewer than s output channels or with one input channel per
group stays an ordinary convolution.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import timm
import torch
from pydantic import Field
from torch import nn

from mcbench.methods.protocols import CompactMethod, MethodContext
from mcbench.methods.registry import register


class GhostModule(nn.Module):
    """Eq. 2-3: Y' = X * f' (m = ceil(n / s) maps), ghosts y_ij = Phi_ij(y'_i) by a d x d depthwise conv."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int | None = None,
                 ratio: int = 2, dw_size: int = 3, bias: bool = False) -> None:
        super().__init__()
        self.out_channels = c_out
        intrinsic = math.ceil(c_out / ratio)
        self.primary = nn.Conv2d(c_in, intrinsic, kernel, stride, kernel // 2 if padding is None else padding, bias=bias)
        self.cheap = nn.Conv2d(intrinsic, intrinsic * (ratio - 1), dw_size, 1, dw_size // 2, groups=intrinsic,
                               bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        return torch.cat([y, self.cheap(y)], dim=1)[:, : self.out_channels]


def ghost_convolutions(model: nn.Module, ratio: int = 2, dw_size: int = 3) -> nn.Module:
    """Replace every ordinary ``nn.Conv2d`` of ``model`` by a Ghost module of the same shape (in place)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Conv2d) and child.groups == 1 and child.out_channels >= ratio:
            pad = child.padding[0] if isinstance(child.padding, tuple) else child.padding
            setattr(model, name, GhostModule(child.in_channels, child.out_channels, child.kernel_size[0],
                                             child.stride[0], pad, ratio, dw_size, bias=child.bias is not None))
        else:
            ghost_convolutions(child, ratio, dw_size)
    return model


@register(family="compact")
class han2019ghostnet(CompactMethod):
    @dataclass
    class Config:
        network: Literal["ghost-task", "ghostnet_050", "ghostnet_100", "ghostnet_130"] = "ghost-task"
        ratio: Annotated[int, Field(ge=2, le=8)] = 2      # s (Section 4.1 uses s = 2)
        dw_size: Annotated[int, Field(ge=1, le=7)] = 3    # d (Section 4.1 uses d = 3)

    def build(self, ctx: MethodContext) -> nn.Module:
        if self.config.network == "ghost-task":
            return ghost_convolutions(ctx.build_baseline(), self.config.ratio, self.config.dw_size)
        return timm.create_model(self.config.network, pretrained=False, num_classes=ctx.num_classes,
                                 in_chans=ctx.in_chans)
