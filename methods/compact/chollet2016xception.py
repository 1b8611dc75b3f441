"""Xception: Deep Learning with Depthwise Separable Convolutions.

Chollet (2016), arXiv:1610.02357 (CVPR 2017). Key: chollet2016xception.
Implements the architecture of Section 3 / Figure 5: an entry flow (two 3x3 convs, 32 and 64
filters, the first with stride 2, then three residual modules of two separable convs and a 3x3/2
max-pool, 128/256/728 filters, with 1x1/2 conv shortcuts), a middle flow (eight residual modules
of three 728-filter separable convs) and an exit flow (a 728/1024 residual module, separable
convs of 1536 and 2048 filters, global average pooling, a fully connected classifier). A separable
conv is a 3x3 depthwise conv followed by a 1x1 pointwise conv with no nonlinearity in between
(Section 4.7); every conv and separable conv is followed by batch normalisation. At the paper's
size (299x299, 1000 classes) it has Table 3's 22,855,952 parameters, as timm's ``legacy_xception``
(the Keras port; timm's ``xception41/65/71`` are the later DeepLab variants, not the paper's).
Real: the architecture is what it is. Simulated: nothing.
Deviations: ``width_multiplier`` scales every layer and ``middle_repeats`` sets the middle flow's
length (the paper has neither; its network is 1.0 / 8); ``stem="small"`` makes the two entry convs
stride 1 with padding, for 8x8 and 28x28 inputs (the paper's are unpadded, the first at stride 2).
Task defaults: width 0.25, 2 middle modules.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from mcbench.methods.protocols import CompactMethod, MethodContext
from mcbench.methods.registry import register


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 then pointwise 1x1, no nonlinearity between (Section 4.7), then BN."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


class XceptionModule(nn.Module):
    """Figure 5's residual module: [ReLU, SeparableConv] x n (+ 3x3/2 max-pool) plus a shortcut."""

    def __init__(self, widths: list[int], c_in: int, downsample: bool, relu_first: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, c_out in enumerate(widths):
            if i > 0 or relu_first:
                layers.append(nn.ReLU(inplace=False))
            layers.append(SeparableConv(c_in if i == 0 else widths[i - 1], c_out))
        if downsample:
            layers.append(nn.MaxPool2d(3, 2, padding=1))
        self.body = nn.Sequential(*layers)
        c_out = widths[-1]
        self.shortcut = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2 if downsample else 1, bias=False),
                                       nn.BatchNorm2d(c_out))
                         if downsample or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class Xception(nn.Module):
    def __init__(self, num_classes: int, in_chans: int = 3, width_multiplier: float = 1.0, middle_repeats: int = 8,
                 stem: Literal["paper", "small"] = "paper") -> None:
        super().__init__()
        w = lambda c: max(8, int(round(c * width_multiplier)))  # noqa: E731
        stride, pad = (2, 0) if stem == "paper" else (1, 1)
        self.entry_stem = nn.Sequential(
            nn.Conv2d(in_chans, w(32), 3, stride, pad, bias=False), nn.BatchNorm2d(w(32)), nn.ReLU(inplace=True),
            nn.Conv2d(w(32), w(64), 3, 1, pad, bias=False), nn.BatchNorm2d(w(64)), nn.ReLU(inplace=True))
        self.entry = nn.Sequential(XceptionModule([w(128)] * 2, w(64), True, relu_first=False),
                                   XceptionModule([w(256)] * 2, w(128), True),
                                   XceptionModule([w(728)] * 2, w(256), True))
        self.middle = nn.Sequential(*[XceptionModule([w(728)] * 3, w(728), False) for _ in range(middle_repeats)])
        self.exit = nn.Sequential(XceptionModule([w(728), w(1024)], w(728), True),
                                  SeparableConv(w(1024), w(1536)), nn.ReLU(inplace=True),
                                  SeparableConv(w(1536), w(2048)), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w(2048), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.exit(self.middle(self.entry(self.entry_stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


@register(family="compact")
class chollet2016xception(CompactMethod):
    @dataclass
    class Config:
        width_multiplier: Annotated[float, Field(gt=0.0, le=2.0)] = 0.25   # 1.0 = Figure 5
        middle_repeats: Annotated[int, Field(ge=0, le=16)] = 2              # 8 = Figure 5
        stem: Literal["paper", "small"] = "small"                           # "paper": unpadded, conv1 stride 2

    def build(self, ctx: MethodContext) -> nn.Module:
        c = self.config
        return Xception(ctx.num_classes, ctx.in_chans, c.width_multiplier, c.middle_repeats, c.stem)
