"""Task architectures as data: an ``ArchSpec`` names a builder in ``ARCHS`` plus its sizes.

The task CNN (``cnn``) is a stack of conv-BN-ReLU stages (2x2 max-pool between stages),
global average pooling and a linear classifier. Stage modules are named
``stage1..stageN`` so feature-based distillation can hook them; ``depth`` > 1 puts
several conv-BN-ReLU blocks in each stage (a thin-and-deep variant, as in FitNets).
``mlp`` is a fully connected network (``widths`` = hidden sizes, optional dropout), the
architecture of several papers' MNIST experiments; ``mlp_bn`` adds batch normalisation.
``vgg`` is a VGG-style plain network whose ``widths`` is the usual configuration list with 0
marking a max-pool (VGG-16 for CIFAR-10, as in the channel-pruning papers' CIFAR experiments).
``resnet`` is the CIFAR ResNet of He et al. (2016) (basic blocks with residual sums; ResNet-20 is
widths (16, 32, 64), depth 3), the branching network of the structured-pruning papers.

Adding an architecture is one decorated builder::

    @arch("lenet5")
    def _lenet5(spec: ArchSpec, in_chans: int, num_classes: int, input_size) -> nn.Module: ...

Builders are pure functions of (spec, input shape, classes); a spec is hashable, so it is
part of every row's and checkpoint's identity.
"""
from __future__ import annotations

import math
from typing import Callable

from torch import nn

from mcbench.benchmarks.archspec import ArchSpec  # the spec is plain data (readable without torch)

__all__ = ["ARCHS", "ArchSpec", "arch"]


Builder = Callable[[ArchSpec, int, int, tuple[int, int]], nn.Module]
ARCHS: dict[str, Builder] = {}


def arch(name: str) -> Callable[[Builder], Builder]:
    """Register an architecture builder under ``name``."""

    def deco(fn: Builder) -> Builder:
        if name in ARCHS:
            raise ValueError(f"architecture {name!r} registered twice")
        ARCHS[name] = fn
        return fn

    return deco


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    def __init__(self, in_chans: int, num_classes: int, widths: tuple[int, ...], depth: int = 1) -> None:
        super().__init__()
        self.n_stages = len(widths)
        c_in = in_chans
        for i, w in enumerate(widths, start=1):
            blocks = [conv_bn_relu(c_in if j == 0 else w, w) for j in range(depth)]
            # depth 1 keeps the original layout (stageK = conv, bn, relu) so checkpoints and layer names stay stable
            setattr(self, f"stage{i}", blocks[0] if depth == 1 else nn.Sequential(*blocks))
            if i < len(widths):
                setattr(self, f"pool{i}", nn.MaxPool2d(2))
            c_in = w
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        for i in range(1, self.n_stages + 1):
            x = getattr(self, f"stage{i}")(x)
            if i < self.n_stages:
                x = getattr(self, f"pool{i}")(x)
        return self.fc(self.flatten(self.gap(x)))


class MLP(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...], dropout: float = 0.0,
                 batchnorm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_features
        for h in hidden:
            norm = [nn.BatchNorm1d(h)] if batchnorm else []
            layers += [nn.Linear(d, h, bias=not batchnorm), *norm, nn.ReLU(inplace=True)]
            layers += [nn.Dropout(dropout)] if dropout else []
            d = h
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(d, num_classes)

    def forward(self, x):
        return self.fc(self.body(x))


@arch("cnn")
def _cnn(spec: ArchSpec, in_chans: int, num_classes: int, input_size: tuple[int, int]) -> nn.Module:
    return SmallCNN(in_chans, num_classes, spec.widths, spec.depth)


@arch("mlp")
def _mlp(spec: ArchSpec, in_chans: int, num_classes: int, input_size: tuple[int, int]) -> nn.Module:
    return MLP(in_chans * math.prod(input_size), num_classes, spec.widths, spec.dropout)


@arch("mlp_bn")
def _mlp_bn(spec: ArchSpec, in_chans: int, num_classes: int, input_size: tuple[int, int]) -> nn.Module:
    """``mlp`` with batch normalisation after each hidden linear layer (as in BNN's MNIST MLP)."""
    return MLP(in_chans * math.prod(input_size), num_classes, spec.widths, spec.dropout, batchnorm=True)


class VGG(nn.Module):
    """VGG-style plain network: ``features`` (conv3x3-BN-ReLU, 2x2 max-pools), global average pool, one Linear."""

    def __init__(self, in_chans: int, num_classes: int, cfg: tuple[int, ...], input_size: tuple[int, int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, side = in_chans, min(input_size)
        for v in cfg:
            if v == 0:
                if side >= 2:  # a pool that would shrink the map below 1x1 is left out (28x28 inputs)
                    layers.append(nn.MaxPool2d(2))
                    side //= 2
                continue
            layers += [nn.Conv2d(c_in, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            c_in = v
        self.features = nn.Sequential(*layers)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.gap(self.features(x))))


@arch("vgg")
def _vgg(spec: ArchSpec, in_chans: int, num_classes: int, input_size: tuple[int, int]) -> nn.Module:
    """``widths`` is a VGG configuration list, 0 marking a 2x2 max-pool ('M' in the usual lists);
    VGG-16 for CIFAR: (64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0)."""
    if not any(spec.widths):
        raise ValueError("vgg: widths needs at least one conv width (0 marks a max-pool)")
    return VGG(in_chans, num_classes, spec.widths, input_size)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN projection) shortcut, ReLU after the sum."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, Sec. 4.2): a 3x3 stem, stages of ``depth`` basic blocks
    (stride 2 at each later stage's first block), global average pooling, one Linear."""

    def __init__(self, in_chans: int, num_classes: int, widths: tuple[int, ...], depth: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        stages, c_in = [], widths[0]
        for i, w in enumerate(widths):
            stages.append(nn.Sequential(*[BasicBlock(c_in if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1)
                                          for j in range(depth)]))
            c_in = w
        self.stages = nn.Sequential(*stages)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.gap(self.stages(self.stem(x)))))


@arch("resnet")
def _resnet(spec: ArchSpec, in_chans: int, num_classes: int, input_size: tuple[int, int]) -> nn.Module:
    """``widths`` per stage, ``depth`` basic blocks per stage: ResNet-20 for CIFAR is widths (16, 32, 64), depth 3."""
    return ResNet(in_chans, num_classes, spec.widths, max(1, spec.depth))


def build(spec: ArchSpec, in_chans: int, num_classes: int, input_size: tuple[int, int] = (28, 28)) -> nn.Module:
    try:
        builder = ARCHS[spec.name]
    except KeyError:
        raise ValueError(f"unknown architecture {spec.name!r}; known: {', '.join(sorted(ARCHS))}") from None
    return builder(spec, in_chans, num_classes, tuple(input_size))
