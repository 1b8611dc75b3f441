"""Apprentice: Using Knowledge Distillation Techniques To Improve Low-Precision Network Accuracy.

Mishra, Marr (2017/ICLR 2018), arXiv:1711.05852. Key: mishra2017apprentice.
Implements the distillation loss of Section 3 with a full-precision teacher and a low-precision
student (Section 4):
    L = alpha H(y, p_T) + beta H(y, p_S) + gamma H(z_T, p_S),  T = 1.
    With a trained, frozen teacher (schemes B and C) the first term is a constant and is dropped:
    L = beta CE(y, p_S) + gamma KL(softmax(z_T) || softmax(z_S)) (beta = gamma = 0.5).
    Low precision (weights only, activations kept at 32 bits as in the paper's "32A" rows):
    ternary ("2-bit") weights w_t = a * sign(w) * 1{|w| > 0.7 E|w|}, a the mean |w| above the
    threshold (per layer, TWN); k-bit weights (k >= 3): symmetric uniform levels,
    w_q = s * round(w / s * (2^{k-1} - 1)) / (2^{k-1} - 1), s = max |w| of the layer.
    Full-precision shadow weights are trained through a straight-through estimator.
    Schemes (Section 4): "B" a low-precision student trained from scratch by distillation from a
    trained full-precision teacher; "C" the trained full-precision student (cached) fine-tuned to
    low precision with distillation. Scheme A (teacher and student trained jointly) is not
    implemented: it retrains the teacher.
    Control row ``no-kd``: the same low-precision student from the same start, trained with
    cross-entropy alone (the paper's baseline low-precision networks).
Real: the low-precision training. Simulated: the weights are stored and computed as float
tensors holding 3 (ternary) or 2^k - 1 values per layer; no low-bit kernels, no packed storage
(bits_per_weight is the theoretical figure).
Deviations: every conv and linear layer is quantized, the first and last included (the paper
keeps the first layer at full precision). k-bit weights are scaled by the layer's max |w| (WRPN
clips to [-1, 1] unscaled; our weights are far smaller than 1). Ternary thresholds follow TWN
(the paper cites ternary schemes without fixing one in the text we read). AdamW + cosine (the
harness recipe) instead of SGD with momentum; scheme C fine-tunes for the fine-tuning budget.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from mcbench.methods.distillation.hinton2015distilling import kd_loss
from mcbench.methods.flows.distill import compressed, distil, frozen
from mcbench.methods.protocols import Compressed, DistillationMethod, MethodContext, ModelOutput
from mcbench.methods.registry import register

QUANTIZED = (nn.Conv2d, nn.Linear)


def ternarize(w: torch.Tensor) -> torch.Tensor:
    """TWN: a * sign(w) on |w| > 0.7 mean|w|, 0 elsewhere; a = mean |w| above the threshold."""
    delta = 0.7 * w.abs().mean()
    mask = (w.abs() > delta).to(w.dtype)
    a = (w.abs() * mask).sum() / mask.sum().clamp_min(1)
    return a * torch.sign(w) * mask


def uniform_symmetric(w: torch.Tensor, bits: int) -> torch.Tensor:
    """k-bit symmetric levels s * i / (2^{k-1} - 1), i in [-(2^{k-1} - 1), 2^{k-1} - 1], s = max |w|."""
    n = 2 ** (bits - 1) - 1
    s = w.abs().max().clamp_min(1e-12)
    return torch.round(w / s * n) / n * s


def quantize_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    return ternarize(w) if bits == 2 else uniform_symmetric(w, bits)


class LowBitWeight(nn.Module):
    """Parametrization: the forward pass sees quantized weights, the gradient reaches the float shadow (STE)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w + (quantize_weight(w, self.bits) - w).detach()


def make_low_precision(model: nn.Module, bits: int) -> nn.Module:
    """Quantize the weight of every conv and linear layer (in place); returns ``model``."""
    for m in model.modules():
        if isinstance(m, QUANTIZED):
            parametrize.register_parametrization(m, "weight", LowBitWeight(bits))
    return model


def freeze_low_precision(model: nn.Module) -> nn.Module:
    """Remove the parametrizations, keeping the quantized values as the layers' weights (in place)."""
    for m in model.modules():
        if isinstance(m, QUANTIZED) and parametrize.is_parametrized(m, "weight"):
            bits = m.parametrizations.weight[0].bits
            with torch.no_grad():   # quantize the shadow weights directly (w + (q - w) is q only up to rounding)
                q = quantize_weight(m.parametrizations.weight.original.detach(), bits)
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
            with torch.no_grad():
                m.weight.copy_(q)
    return model


def apprentice_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None,
                    beta: float, gamma: float) -> torch.Tensor:
    """beta CE(y, p_S) + gamma KL(p_T || p_S) at T = 1 (KL = H(p_T, p_S) minus a constant)."""
    return beta * F.cross_entropy(student_logits, targets) + gamma * kd_loss(student_logits, teacher_logits, None, 1.0, 0.0)


@register(family="distillation")
class mishra2017apprentice(DistillationMethod):
    @dataclass
    class Config:
        weight_bits: Annotated[int, Field(ge=2, le=8)] = 2   # 2 = ternary (the paper's "2-bit"); 4 = 4-bit
        scheme: Literal["B", "C"] = "B"                      # B: from scratch with KD; C: fine-tune the trained student
        beta: Annotated[float, Field(ge=0)] = 0.5            # weight of the hard-label cross-entropy
        gamma: Annotated[float, Field(ge=0)] = 0.5           # weight of the teacher's soft targets (T = 1)
        no_kd_control: bool = True                           # the same low-precision student without KD

    def _start(self, ctx: MethodContext) -> tuple[nn.Module, int]:
        if self.config.scheme == "C":
            return ctx.load_student(), ctx.epochs_finetune
        return ctx.build_student(), ctx.epochs_scratch

    def _deployable(self, model: nn.Module, report, note: str) -> Compressed:
        model = freeze_low_precision(model)
        out = compressed(model, report, note=note)
        out.real, out.storage_real, out.compute_real = False, False, False
        out.bits_per_weight = float(self.config.weight_bits)
        return out

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        teacher = frozen(ctx.load_teacher())
        student, epochs = self._start(ctx)
        make_low_precision(student, c.weight_bits)

        def loss(s: ModelOutput, y: torch.Tensor | None, t: ModelOutput | None) -> torch.Tensor:
            return apprentice_loss(s.logits, t.logits, y, c.beta, c.gamma)

        report = distil(ctx, student, loss, teacher=teacher, epochs=epochs, stage=f"kd_scheme_{c.scheme}")
        precision = "ternary" if c.weight_bits == 2 else f"{c.weight_bits}-bit"
        out = self._deployable(student, report, f"{precision} weights (fake-quantized floats, 32-bit activations), "
                                                f"trained by distillation from a full-precision teacher (scheme {c.scheme})")
        out.extra.update(weight_bits=c.weight_bits, scheme=c.scheme)
        if c.no_kd_control:
            plain, _ = self._start(ctx)
            make_low_precision(plain, c.weight_bits)
            plain_report = ctx.train_fn(plain, epochs=epochs, stage="control:no-kd")
            out.controls["no-kd"] = self._deployable(plain, plain_report, f"the same {precision} student trained "
                                                                          "without distillation (control)")
        return out
