"""MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications.

Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam (2017), arXiv:1704.04861. Key: howard2017mobilenets.
Implements the body of Table 1: a 3x3 conv (stride 2, 32 channels), then 13 depthwise separable
blocks (3x3 depthwise conv-BN-ReLU, 1x1 pointwise conv-BN-ReLU; Section 3.1, Figure 3), global
average pooling and a fully connected classifier. The width multiplier alpha (Section 3.3) scales
every layer's channels to round(alpha * C); the resolution multiplier rho (Section 3.4) is the
input size itself (224 * rho), so it is chosen by the input the model is given, not by a config
field here. Cost of one separable block (Eq. 5): D_K^2 * alpha*M * D_F^2 + alpha*M * alpha*N * D_F^2
mult-adds, with D_F = rho * the layer's feature-map side.
Real: the architecture is physically smaller (fewer parameters and MACs). Simulated: nothing.
Deviations: ``stride1_layers`` turns the first N of the network's five stride-2 layers into
stride 1 for small task inputs (default 2: a 28x28 input ends on a 4x4 map instead of 1x1); the
paper's configuration is ``stride1_layers=0``. Default width 0.5 on the shared task (the paper
sweeps 0.25-1.0 in Table 6). Table 1 lists the 13th depthwise layer as stride 2 on a 7x7 map;
its output stays 7x7, so we use stride 1 as the reference implementations do.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mcbench.methods.protocols import CompactMethod, MethodContext
from mcbench.methods.registry import register

STEM = 32
# (stride, pointwise output channels) of the 13 depthwise separable blocks of Table 1, alpha = 1
BLOCKS: tuple[tuple[int, int], ...] = (
    (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
    (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024),
)


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class DepthwiseSeparable(nn.Sequential):
    """Figure 3 (right): 3x3 depthwise conv-BN-ReLU, then 1x1 pointwise conv-BN-ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.depthwise = _conv_bn_relu(c_in, c_in, 3, stride, groups=c_in)
        self.pointwise = _conv_bn_relu(c_in, c_out, 1, 1)


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int, in_chans: int = 3, width_multiplier: float = 1.0,
                 stride1_layers: int = 0) -> None:
        super().__init__()
        if width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
        if not 0 <= stride1_layers <= 5:
            raise ValueError(f"stride1_layers counts the five stride-2 layers: 0..5, got {stride1_layers}")
        width = lambda c: max(8, int(round(c * width_multiplier)))  # noqa: E731 - alpha * C (Section 3.3)
        strides = [2] + [s for s, _ in BLOCKS]
        downsampling = [i for i, s in enumerate(strides) if s == 2]
        for i in downsampling[:stride1_layers]:
            strides[i] = 1
        self.stem = _conv_bn_relu(in_chans, width(STEM), 3, strides[0])
        c_in, blocks = width(STEM), []
        for stride, (_, c) in zip(strides[1:], BLOCKS):
            blocks.append(DepthwiseSeparable(c_in, width(c), stride))
            c_in = width(c)
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.blocks(self.stem(x)))))


@register(family="compact")
class howard2017mobilenets(CompactMethod):
    @dataclass
    class Config:
        width_multiplier: float = 0.5   # alpha (Section 3.3): 1.0, 0.75, 0.5, 0.25 in Table 6
        stride1_layers: int = 2         # 0 = the paper's strides; N = first N stride-2 layers use stride 1

    def build(self, ctx: MethodContext) -> nn.Module:
        return MobileNetV1(ctx.num_classes, ctx.in_chans, self.config.width_multiplier, self.config.stride1_layers)
