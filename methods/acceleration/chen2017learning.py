"""Learning a Wavelet-like Auto-Encoder to Accelerate Deep Neural Networks.

Chen, Lin, Zhang, Fan, Lu, Wang (2017), arXiv:1712.07493 (AAAI 2018). Key: chen2017learning.
Implements Section 3: a wavelet-like auto-encoder (WAE) whose encoder turns the image into two
half-resolution images, a low-frequency I_L and a high-frequency I_H, and whose decoder must
reconstruct the image from both (reconstruction loss), while an energy loss keeps I_H small so
that the information concentrates in I_L. The classifier runs the expensive backbone (here the
task's baseline CNN) on I_L only, a light network on I_H, and classifies their fused features; the
WAE and the classifier are trained jointly (cross-entropy + reconstruction + energy).
Real: the backbone really runs at half resolution (about 4x fewer backbone MACs), the WAE and
the light branch are added; the decoder is used in training only and not deployed. Simulated: nothing.
Deviations: layer widths are ours (16-channel encoder, one 3x3 conv per head, a transposed-conv
decoder, a 16-channel light branch), scaled to the task; the loss weights (reconstruction 1.0,
energy 0.1) are our choice, not the paper's schedule; the backbone is the harness's CNN (the
paper uses VGG-16 and ResNet-50 on ImageNet and CACD/IMDB-WIKI).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.protocols import AccelerationMethod, Compressed, MethodContext, ModelOutput
from mcbench.methods.registry import register


class WaveletLikeAutoEncoder(nn.Module):
    """Encoder: two 3x3 convs, then two stride-2 heads (I_L, I_H); decoder: (I_L, I_H) -> image."""

    def __init__(self, in_chans: int, hidden: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_chans, hidden, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True))
        self.low = nn.Conv2d(hidden, in_chans, 3, stride=2, padding=1)
        self.high = nn.Conv2d(hidden, in_chans, 3, stride=2, padding=1)
        self.decoder = nn.Sequential(nn.ConvTranspose2d(2 * in_chans, hidden, 4, stride=2, padding=1),
                                     nn.ReLU(inplace=True), nn.Conv2d(hidden, in_chans, 3, padding=1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.low(h), self.high(h)

    def decode(self, low: torch.Tensor, high: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        out = self.decoder(torch.cat([low, high], dim=1))
        return out[..., : size[0], : size[1]] if out.shape[-2:] != size else out


class AuxLosses(dict):
    """The last training forward's auxiliary losses; never copied or pickled (they hold a graph)."""

    def __deepcopy__(self, memo: dict) -> "AuxLosses":
        return AuxLosses()

    def __reduce__(self):
        return (AuxLosses, ())


class WAENet(nn.Module):
    """Backbone on I_L, a light branch on I_H, a linear classifier on the concatenated features."""

    def __init__(self, backbone: nn.Module, in_chans: int, num_classes: int, light: int = 16) -> None:
        super().__init__()
        fc = getattr(backbone, "fc", None)
        if not isinstance(fc, nn.Linear):
            raise ValueError("the WAE classifier needs a backbone whose classifier is a Linear named 'fc'")
        self.wae = WaveletLikeAutoEncoder(in_chans)
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.light = nn.Sequential(nn.Conv2d(in_chans, light, 3, padding=1), nn.BatchNorm2d(light),
                                   nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(fc.in_features + light, num_classes)
        self.aux = AuxLosses()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.wae.encode(x)
        logits = self.fc(torch.cat([self.backbone(low), self.light(high)], dim=1))
        if self.training:   # the decoder runs in training only (reconstruction loss)
            rec = self.wae.decode(low, high, tuple(x.shape[-2:]))
            self.aux = AuxLosses(reconstruction=F.mse_loss(rec, x), energy=high.pow(2).mean())
        return logits


@register(family="acceleration")
class chen2017learning(AccelerationMethod):
    real = True
    note = "backbone runs on the half-resolution low-frequency image (fewer real MACs); decoder used in training only"

    @dataclass
    class Config:
        reconstruction_weight: Annotated[float, Field(ge=0.0)] = 1.0
        energy_weight: Annotated[float, Field(ge=0.0)] = 0.1

    def build(self, ctx: MethodContext) -> nn.Module:
        return WAENet(ctx.build_baseline(), ctx.in_chans, ctx.num_classes)

    def loss_for(self, model: WAENet):
        c = self.config

        def loss(student: ModelOutput, targets: torch.Tensor | None, teacher: ModelOutput | None) -> torch.Tensor:
            total = F.cross_entropy(student.logits, targets)
            aux, model.aux = model.aux, AuxLosses()   # taken once: the model keeps no graph between steps
            if aux:
                total = total + c.reconstruction_weight * aux["reconstruction"] + c.energy_weight * aux["energy"]
            return total

        return loss

    def apply(self, ctx: MethodContext) -> Compressed:
        model = self.build(ctx).to(ctx.device)
        report = ctx.train_fn(model, epochs=ctx.epochs_scratch, loss=self.loss_for(model))
        model.aux = AuxLosses()
        return Compressed(model.eval(), real=self.real, note=self.note, train_report=report)
