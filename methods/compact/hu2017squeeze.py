"""Squeeze-and-Excitation Networks.

Hu, Shen, Sun (2017), arXiv:1709.01507 (CVPR 2018). Key: hu2017squeeze.
Implements the SE block of Section 3 (Fig. 1): squeeze z_c = mean over H x W of u_c (Eq. 2);
excitation s = sigmoid(W_2 ReLU(W_1 z)) with W_1 in R^{C/r x C}, W_2 in R^{C x C/r} (Eq. 3);
scale x~_c = s_c * u_c (Eq. 4); reduction ratio r = 16 (Section 6.1). ``network="task"`` adds one SE
block after every conv-BN-ReLU stage of the task's baseline CNN (the paper integrates SE after
the non-identity branch of a module, Fig. 2-3; the task CNN's modules are its stages);
``network="legacy_seresnet50"`` is SE-ResNet-50 (Table 1, stride on the first 1x1 conv as in the
released Caffe model) through timm's ``legacy_seresnet50`` (``pretrained=False``), for the
complexity check of Section 4 (~3.87 GFLOPs, ~2.5M parameters more than ResNet-50's ~25M).
Real: the blocks really run (a few more parameters and MACs than the baseline). Simulated: nothing.
Deviations: the task network is the harness's plain CNN, not a ResNet/Inception; with its widths
(32-128) r = 16 leaves 2-8 hidden units per block, as the paper's ratio would; the minimum is 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import timm
import torch
from pydantic import Field
from torch import nn

from mcbench.methods.protocols import CompactMethod, MethodContext
from mcbench.methods.registry import register


class SEBlock(nn.Module):
    """Eq. 2-4: channel weights from the globally pooled input, through a C -> C/r -> C bottleneck."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)   # W_1 (with bias, as the released model)
        self.fc2 = nn.Linear(hidden, channels)   # W_2

    def excitation(self, x: torch.Tensor) -> torch.Tensor:
        """s in (0, 1)^C per sample (Eq. 3)."""
        z = x.mean(dim=(2, 3))                   # squeeze (Eq. 2)
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(z))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.excitation(x)[:, :, None, None]   # scale (Eq. 4)


def _out_channels(module: nn.Module) -> int | None:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels if convs else None


def add_se_blocks(model: nn.Module, reduction: int) -> nn.Module:
    """An SE block after every child named ``stage*`` of the task CNN (in place; returns the model)."""
    stages = [(n, m) for n, m in model.named_children() if n.startswith("stage")]
    if not stages:
        raise ValueError("the task network has no stage* modules to add SE blocks to")
    for name, stage in stages:
        setattr(model, name, nn.Sequential(stage, SEBlock(_out_channels(stage), reduction)))
    return model


@register(family="compact")
class hu2017squeeze(CompactMethod):
    @dataclass
    class Config:
        network: Literal["task", "legacy_seresnet50"] = "task"   # legacy_seresnet50: the paper's SE-ResNet-50
        reduction: Annotated[int, Field(ge=1, le=64)] = 16       # r (Section 6.1)

    def build(self, ctx: MethodContext) -> nn.Module:
        if self.config.network == "legacy_seresnet50":
            return timm.create_model("legacy_seresnet50", pretrained=False, num_classes=ctx.num_classes,
                                     in_chans=ctx.in_chans)
        return add_se_blocks(ctx.build_baseline(), self.config.reduction)
