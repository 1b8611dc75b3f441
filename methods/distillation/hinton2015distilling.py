"""Distilling the Knowledge in a Neural Network.

Hinton, Vinyals, Dean (2015), arXiv:1503.02531. Key: hinton2015distilling.
Implements (Section 2):
    L = alpha * CE(z_s, y) + (1 - alpha) * T^2 * KL( softmax(z_t / T) || softmax(z_s / T) )
    z_s, z_t: student and teacher logits; T: temperature; alpha: weight of the hard-label term.
    The T^2 factor keeps the soft-target gradients' magnitude independent of T (Section 2).
Real: the loss and the training of a smaller student. Simulated: nothing.
Deviations: alpha = 0.5 and T = 4 by default (the paper fixes neither; it reports T in 2.5-20
for MNIST and a "considerably lower weight" on the hard term). KL is used instead of the
soft cross-entropy: they differ by the teacher entropy, a constant, so gradients are equal.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field
import torch
import torch.nn.functional as F

from mcbench.methods.protocols import DistillationMethod, ModelOutput
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


@register(family="distillation")
class hinton2015distilling(DistillationMethod):
    @dataclass
    class Config:
        temperature: Annotated[float, Field(gt=0.0)] = 4.0      # T
        alpha: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5    # weight of the hard-label cross-entropy

    def loss(self, student: ModelOutput, targets: torch.Tensor, teacher: ModelOutput | None) -> torch.Tensor:
        if teacher is None:
            raise ValueError("hinton2015distilling needs teacher outputs")
        return kd_loss(student.logits, teacher.logits, targets, self.config.temperature, self.config.alpha)
