"""SEP-Nets: Small and Effective Pattern Networks.

Li, Wang, Lv, Yang (2017), arXiv:1706.03912. Key: li2017sepnets.
Implements the two contributions of Section 3:
    Pattern binarization (Section 3.1): only the k x k convolutions (k > 1), the "pattern" extractors,
        are binarized; 1x1 convolutions (projections) stay full precision. Each k x k filter f becomes
        alpha_f * sign(W_f) with alpha_f = ||W_f||_1 / n (the binary-weight approximation the paper
        adopts), so a filter holds exactly two values, +alpha_f and -alpha_f. The procedure as we read
        the paper: train the full-precision network, binarize its k x k filters, then fine-tune the
        rest of the network (1x1 convolutions, BN, classifier) with the binary patterns fixed.
    Pattern residual block (Section 3.2): a k x k pattern convolution and a 1x1 convolution applied to
        the same input, same output width and stride, each followed by BN, summed (the 1x1 branch's
        transformed features added to the pattern features), then ReLU.
The network: a full-precision 3x3 stem, three stages of pattern residual blocks (the first of stages
2 and 3 at stride 2), global pooling and a linear classifier.
Real: storage: the encoded file holds each pattern filter's signs packed at 1 bit per weight plus one
float32 alpha per filter; the stem, 1x1 convolutions, BN and the classifier stay float32.
Simulated: compute: the deployed pattern convolutions run as float convolutions with +/-alpha weights
(no binary kernel); training of the full-precision phase is ordinary float training.
Deviations: the paper's SEP-Net module and its ImageNet network (~1M parameters: its 1x1 reductions,
group counts and widths) were not available to us, so the network is a stack of pattern residual blocks
with our widths (task default 32-64-128, one block per stage) and no complexity figure is compared; the
stem stays full precision (as binary-weight papers keep the first layer); AdamW + cosine schedule.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.encoding import container
from mcbench.methods.ops import nonzero_macs, tally
from mcbench.methods.protocols import CompactMethod, Compressed, EncodedModel, MethodContext
from mcbench.methods.registry import register


def sign(w: torch.Tensor) -> torch.Tensor:
    """+1 where w >= 0, -1 elsewhere (a zero weight gets +1, so every pattern entry is one bit)."""
    return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))


def filter_scale(w: torch.Tensor) -> torch.Tensor:
    """alpha_f = ||W_f||_1 / n for each output filter f (one float per filter)."""
    return w.abs().flatten(1).mean(dim=1)


class PatternConv2d(nn.Conv2d):
    """A k x k convolution that can be turned into a binary pattern: ``weight`` = sign(W), ``alpha`` per filter."""

    binarized: bool = False

    def effective_weight(self) -> torch.Tensor:
        if self.binarized:
            return self.weight * self.alpha.view(-1, 1, 1, 1)
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)

    @torch.no_grad()
    def binarize(self) -> None:
        """W -> sign(W) (kept in ``weight``, frozen) and alpha (a buffer): the stored pattern."""
        if self.binarized:
            return
        alpha = filter_scale(self.weight).clone()
        self.weight.copy_(sign(self.weight))
        self.weight.requires_grad_(False)
        self.register_buffer("alpha", alpha)
        self.binarized = True


class PatternResidualBlock(nn.Module):
    """y = ReLU(BN(pattern_kxk(x)) + BN(conv_1x1(x))): Section 3.2's pattern residual block."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, kernel: int = 3, groups: int = 1) -> None:
        super().__init__()
        self.pattern = PatternConv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.pattern_bn = nn.BatchNorm2d(c_out)
        self.transform = nn.Conv2d(c_in, c_out, 1, stride, bias=False)
        self.transform_bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pattern_bn(self.pattern(x)) + self.transform_bn(self.transform(x)))


class SEPNet(nn.Module):
    def __init__(self, num_classes: int, in_chans: int, widths: tuple[int, ...] = (32, 64, 128), blocks: int = 1,
                 kernel: int = 3, groups: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        layers, c_in = [], widths[0]
        for s, c_out in enumerate(widths):
            for j in range(blocks):
                layers.append(PatternResidualBlock(c_in, c_out, 2 if s > 0 and j == 0 else 1, kernel,
                                                   groups if c_in % groups == 0 and c_out % groups == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


def pattern_layers(model: nn.Module) -> list[tuple[str, PatternConv2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PatternConv2d)]


def binarize_patterns(model: nn.Module) -> nn.Module:
    """Pattern binarization of every k x k pattern convolution of ``model`` (in place)."""
    for _, m in pattern_layers(model):
        m.binarize()
    return model


def encoding_plan(model: nn.Module) -> dict[str, container.Codec]:
    """Pattern weights (+/-1) as a 1-bit codebook; every other tensor (alphas included) raw float32."""
    return {f"{n}.weight": container.Codebook(1) for n, m in pattern_layers(model) if m.binarized}


def layer_ops(layer: nn.Module, x: torch.Tensor, out: torch.Tensor) -> dict[str, float] | None:
    """A binary pattern needs no multiplication per MAC: +/- input sums, then one alpha per output."""
    if not (isinstance(layer, PatternConv2d) and layer.binarized):
        return None
    return {"additions": nonzero_macs(layer, x, inputs=False)["macs_dense"], "multiplications": float(out.numel())}


def storage_bits(model: nn.Module) -> float:
    """Bits per parameter of the stored model: 1 per pattern weight, 32 for the rest (alphas counted)."""
    n_pattern = sum(m.weight.numel() for _, m in pattern_layers(model) if m.binarized)
    n_alpha = sum(m.alpha.numel() for _, m in pattern_layers(model) if m.binarized)
    n_all = sum(p.numel() for p in model.parameters())
    return (n_pattern + 32.0 * (n_all - n_pattern + n_alpha)) / n_all


@register(family="compact")
class li2017sepnets(CompactMethod):
    @dataclass
    class Config:
        widths: tuple[int, ...] = (32, 64, 128)                # stage widths (ours: the paper's table unavailable)
        blocks: Annotated[int, Field(ge=1, le=16)] = 1         # pattern residual blocks per stage
        kernel: Literal[3, 5] = 3                              # k of the pattern convolutions (k > 1)
        groups: Annotated[int, Field(ge=1, le=64)] = 1         # group count of the pattern convolutions
        binarize: bool = True                                  # False: the full-precision pattern network only

    def build(self, ctx: MethodContext) -> nn.Module:
        c = self.config
        return SEPNet(ctx.num_classes, ctx.in_chans, tuple(c.widths), c.blocks, c.kernel, c.groups)

    def apply(self, ctx: MethodContext) -> Compressed:
        model = self.build(ctx).to(ctx.device)
        report = ctx.train_fn(model, epochs=ctx.epochs_scratch, stage="full-precision")
        if not self.config.binarize:
            return Compressed(model.eval(), real=True, note="SEP-Net, full precision (no pattern binarization)",
                              train_report=report)
        binarize_patterns(model)
        if ctx.epochs_finetune > 0:   # 1x1 convolutions, BN, stem and classifier adapt to the fixed patterns
            report = ctx.train_fn(model, epochs=ctx.epochs_finetune, stage="finetune-1x1")
        deployed = copy.deepcopy(model).cpu().eval()
        build = self.build

        def decode(data: bytes) -> nn.Module:
            fresh = binarize_patterns(build(ctx))
            fresh.load_state_dict(container.decode_state(data), strict=True)
            return fresh.eval()

        encoded = EncodedModel(encode=lambda m: container.encode_model(m, encoding_plan(m)), decode=decode,
                               format="k x k pattern weights as 1-bit packed signs + float32 alpha per filter; "
                                      "stem, 1x1 convolutions, BN and classifier float32")
        patterns = {n for n, _ in pattern_layers(deployed)}
        full = [n for n, m in deployed.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n not in patterns]
        return Compressed(
            deployed, real=False, storage_real=True, compute_real=False, encoded=encoded, train_report=report,
            bits_per_weight=storage_bits(deployed), count_ops=lambda m, x: tally(m, x, layer_ops),
            note="SEP-Net: storage real (k x k patterns at 1 bit + alpha per filter, 1x1 convolutions float32); "
                 "compute simulated (+/-alpha weights on float convolutions)",
            extra={"full_precision_layers": full, "bits_per_weight_quantized_layers": 1.0,
                   "pattern_layers": sorted(patterns)})
