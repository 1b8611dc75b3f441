"""MobileNetV2: Inverted Residuals and Linear Bottlenecks.

Sandler, Howard, Zhu, Zhmoginov, Chen (2018), arXiv:1801.04381 (CVPR 2018). Key: sandler2018mobilenetv2.
Implements the architecture of Table 2 (inverted residual blocks with linear bottlenecks, Section 3-4)
through timm's ``mobilenetv2_*`` models, ``pretrained=False``, with a width multiplier.
Real: the architecture is physically smaller. Simulated: nothing.
Deviations: the width multiplier defaults to 0.5 (the paper's Table 6 sweeps 0.35-1.4); single-channel
inputs; at 28x28 the paper's total stride of 32 leaves a 1x1 final map (``stem_stride=1`` halves it, at
about 1.7x the training time on CPU).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import timm
from torch import nn

from mcbench.methods.protocols import CompactMethod, MethodContext
from mcbench.methods.registry import register


@register(family="compact")
class sandler2018mobilenetv2(CompactMethod):
    @dataclass
    class Config:
        variant: Literal["mobilenetv2_035", "mobilenetv2_050", "mobilenetv2_075", "mobilenetv2_100",
                         "mobilenetv2_140"] = "mobilenetv2_050"   # timm name = width multiplier
        stem_stride: Literal[1, 2] = 2                            # 2 as in the paper; 1 suits tiny inputs

    def build(self, ctx: MethodContext) -> nn.Module:
        model = timm.create_model(self.config.variant, pretrained=False, num_classes=ctx.num_classes,
                                  in_chans=ctx.in_chans)
        model.conv_stem.stride = (self.config.stem_stride, self.config.stem_stride)
        return model
