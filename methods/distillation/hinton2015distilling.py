"""Distilling the Knowledge in a Neural Network.

Hinton, Vinyals, Dean (2015), arXiv:1503.02531. Key: hinton2015distilling.
Implements (Section 2):
    L = alpha * CE(z_s, y) + (1 - alpha) * T^2 * KL( softmax(z_t / T) || softmax(z_s / T) )
    z_s, z_t: student and teacher logits; T: temperature; alpha: weight of the hard-label term.
    The T^2 factor keeps the soft-target gradients' magnitude independent of T (Section 2).
    Omitted-class transfer set (Section 3, ``omit_class``; off by default): a second student is
    distilled on a transfer set without any example of one class, then the bias of that class's
    output unit is raised by the shift that maximises validation top-1 (grid ``bias_grid``);
    control rows ``omit-<c>`` (corrected) and ``omit-<c>-uncorrected`` (same weights, bias not
    raised) show what the soft targets taught about the unseen class.
Real: the loss and the training of a smaller student. Simulated: nothing.
Deviations: alpha = 0.5 and T = 4 by default (the paper fixes neither; it reports T in 2.5-20
for MNIST and a "considerably lower weight" on the hard term). KL is used instead of the
soft cross-entropy: they differ by the teacher entropy, a constant, so gradients are equal.
The omitted class is removed from the transfer set inside the loss (its examples get zero
weight; a student with BatchNorm would still see their inputs in its batch statistics: the
paper's MLPs have none). The bias shift is chosen on the validation split (the paper chose 3.5
on the test set).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field
import torch
import torch.nn.functional as F
from torch import nn

from mcbench.methods.protocols import Compressed, DistillationMethod, MethodContext, ModelOutput
from mcbench.methods.registry import register


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None,
            temperature: float, alpha: float) -> torch.Tensor:
    """alpha * CE(z_s, y) + (1 - alpha) * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)), batch mean.

    With alpha = 0 the hard term is dropped and ``targets`` may be None (unlabelled inputs).
    """
    t = temperature
    if alpha == 0:
        hard = torch.zeros((), device=student_logits.device)
    elif targets is None:
        raise ValueError("kd_loss: alpha > 0 needs labels (targets is None)")
    else:
        hard = F.cross_entropy(student_logits, targets)
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True)
    return alpha * hard + (1.0 - alpha) * t * t * soft


def kd_loss_without_class(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                          temperature: float, alpha: float, omitted: int) -> torch.Tensor:
    """``kd_loss`` over the batch's examples whose label is not ``omitted`` (zero if there are none)."""
    keep = targets != omitted
    if not keep.any():
        return student_logits.sum() * 0.0
    return kd_loss(student_logits[keep], teacher_logits[keep], targets[keep], temperature, alpha)


def last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1].bias is None:
        raise ValueError(f"{type(model).__name__} has no final linear layer with a bias")
    return linears[-1]


def best_bias_shift(model: nn.Module, cls: int, grid: list[float], score) -> tuple[float, float, float]:
    """Raise the output bias of ``cls`` by each shift of ``grid``; keep the best ``score(model)``.

    Returns (shift, score without a shift, best score); ``model`` keeps the best shift."""
    bias = last_linear(model).bias
    base = bias.detach().clone()
    scores = {}
    for shift in [0.0, *grid]:
        with torch.no_grad():
            bias.copy_(base)
            bias[cls] += shift
        scores[shift] = score(model)
    best = max(scores, key=lambda k: (scores[k], -abs(k)))
    with torch.no_grad():
        bias.copy_(base)
        bias[cls] += best
    return best, scores[0.0], scores[best]


@register(family="distillation")
class hinton2015distilling(DistillationMethod):
    @dataclass
    class Config:
        temperature: Annotated[float, Field(gt=0.0)] = 4.0      # T
        alpha: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5    # weight of the hard-label cross-entropy
        omit_class: Annotated[int, Field(ge=0)] | None = None   # Section 3: a student distilled without this class
        bias_grid: list[float] = field(default_factory=lambda: [0.5 * i for i in range(1, 21)])  # shifts tried

    def loss(self, student: ModelOutput, targets: torch.Tensor, teacher: ModelOutput | None) -> torch.Tensor:
        if teacher is None:
            raise ValueError("hinton2015distilling needs teacher outputs")
        return kd_loss(student.logits, teacher.logits, targets, self.config.temperature, self.config.alpha)

    def apply(self, ctx: MethodContext) -> Compressed:
        from mcbench.methods.flows.distill import compressed, distil, distil_task_student, frozen

        out = distil_task_student(ctx, self.loss)
        c = self.config
        if c.omit_class is None:
            return out
        if c.omit_class >= ctx.num_classes:
            raise ValueError(f"hinton2015distilling: omit_class {c.omit_class} is not a class of this task "
                             f"({ctx.num_classes} classes)")
        k = c.omit_class

        def loss(s: ModelOutput, y: torch.Tensor, t: ModelOutput | None) -> torch.Tensor:
            return kd_loss_without_class(s.logits, t.logits, y, c.temperature, c.alpha, k)

        student = ctx.build_student()
        report = distil(ctx, student, loss, teacher=frozen(ctx.load_teacher()), stage=f"control:omit-{k}")
        uncorrected = copy.deepcopy(student).eval()
        shift, before, after = best_bias_shift(student.eval(), k, list(c.bias_grid), ctx.evaluate)
        facts = dict(omitted_class=k, bias_shift=shift, val_top1_pct_uncorrected=before, val_top1_pct_corrected=after)
        out.controls[f"omit-{k}"] = compressed(student, report, note=f"distilled on a transfer set without class {k}, "
                                                                    f"its output bias raised by {shift} (chosen on "
                                                                    "validation)", **facts)
        out.controls[f"omit-{k}-uncorrected"] = compressed(uncorrected, report, note=f"distilled on a transfer set "
                                                                                     f"without class {k}, bias as "
                                                                                     "trained", **facts)
        out.extra.update(facts)
        return out
