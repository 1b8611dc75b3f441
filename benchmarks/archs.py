"""Task architectures: small CNNs sized for 2-core CPU budgets.

``SmallCNN`` is three conv-BN-ReLU stages (two 2x2 max-pools between them),
global average pooling and a linear classifier. Stage modules are named
``stage1..stage3`` so feature-based distillation can hook them.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ArchSpec:
    name: str                      # "cnn"
    widths: tuple[int, int, int]   # output channels of the three stages


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    def __init__(self, in_chans: int, num_classes: int, widths: tuple[int, int, int]) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.stage1 = conv_bn_relu(in_chans, w1)
        self.pool1 = nn.MaxPool2d(2)
        self.stage2 = conv_bn_relu(w1, w2)
        self.pool2 = nn.MaxPool2d(2)
        self.stage3 = conv_bn_relu(w2, w3)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x):
        x = self.pool1(self.stage1(x))
        x = self.pool2(self.stage2(x))
        return self.fc(self.flatten(self.gap(self.stage3(x))))


def build(spec: ArchSpec, in_chans: int, num_classes: int) -> nn.Module:
    if spec.name == "cnn":
        return SmallCNN(in_chans, num_classes, spec.widths)
    raise ValueError(f"unknown architecture {spec.name!r}")
