"""A Gift from Knowledge Distillation: Fast Optimization, Network Minimization and Transfer Learning.

Yim, Joo, Bae, Kim (CVPR 2017), DOI 10.1109/CVPR.2017.754. Key: yim2017gift.
Implements the FSP ("flow of solution procedure") transfer of Section 3 and its two-stage training
(Section 3.3, Algorithm 1):
    Eq. (1): G_{i,j}(x; W) = sum_{s=1..h} sum_{t=1..w} F1_{s,t,i}(x; W) F2_{s,t,j}(x; W) / (h w),
        F1 (h x w x m) and F2 (h x w x n) the first and last feature maps of a section of the
        network (same spatial size), G in R^{m x n}.
    Eq. (2): L_FSP(W_t, W_s) = 1/N sum_x sum_{i=1..n} lambda_i || G_i^T(x; W_t) - G_i^S(x; W_s) ||_2^2,
        lambda_i equal (1 here).
    Stage 1: the student's weights minimise L_FSP against the frozen teacher. Stage 2: the student
    is trained on the task with its ordinary loss (cross-entropy), starting from stage 1's weights.
    As in the paper's network-minimisation experiment (a deeper teacher of the same widths as a
    shallower student), the teacher is the task's ``student_thin_deep`` variant (the student's
    widths, two conv blocks per stage) trained alone (cached like the task teacher) and the student
    is the task's student (one block per stage); the FSP sections are the stages: F1 the stage's
    input (the previous pool's output), F2 the stage's output, for every stage after the first.
    The faster-optimisation claim is checked with a control: the same student trained from
    scratch with cross-entropy under the same recipe (control row ``scratch``), validation
    accuracy per epoch of both in the row (``fsp_val_acc_per_epoch``, ``scratch_val_acc_per_epoch``).
Real: the smaller student and both stages. Simulated: nothing.
Deviations: the first stage has no FSP pair (its input is the image, not a feature map of the
network; the paper's first pair starts after the first convolution). Stage 1 runs for
``fsp_epochs_fraction`` of the scratch budget (paper: a fixed number of iterations at its own
learning rate). AdamW + cosine (the harness recipe) instead of SGD with momentum. The teacher is
not the task's wide teacher: FSP matrices compare only when the channel counts match.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from mcbench.methods.flows.distill import compressed, distil, frozen
from mcbench.methods.protocols import Compressed, DistillationMethod, MethodContext, ModelOutput, TrainHooks
from mcbench.methods.registry import register


def fsp_matrix(f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """Eq. (1): (B, m, h, w) x (B, n, h, w) -> (B, m, n), inner products over positions divided by h*w."""
    if f1.dim() != 4 or f1.shape[0] != f2.shape[0] or f1.shape[2:] != f2.shape[2:]:
        raise ValueError(f"FSP needs two feature maps of one batch with the same spatial size, got "
                         f"{tuple(f1.shape)} and {tuple(f2.shape)}")
    hw = f1.shape[2] * f1.shape[3]
    return f1.flatten(2) @ f2.flatten(2).transpose(1, 2) / hw


def fsp_loss(student_pairs: list[tuple[torch.Tensor, torch.Tensor]],
             teacher_pairs: list[tuple[torch.Tensor, torch.Tensor]], weights: list[float] | None = None) -> torch.Tensor:
    """Eq. (2): batch mean of sum_i lambda_i ||G_i^T - G_i^S||_2^2 (squared Frobenius norm)."""
    if len(student_pairs) != len(teacher_pairs):
        raise ValueError(f"{len(student_pairs)} student FSP pairs vs {len(teacher_pairs)} teacher pairs")
    weights = weights or [1.0] * len(student_pairs)
    total = torch.zeros(())
    for lam, (s1, s2), (t1, t2) in zip(weights, student_pairs, teacher_pairs):
        g_s, g_t = fsp_matrix(s1, s2), fsp_matrix(t1, t2)
        if g_s.shape != g_t.shape:
            raise ValueError(f"FSP matrices differ in shape: student {tuple(g_s.shape[1:])} vs teacher "
                             f"{tuple(g_t.shape[1:])}: the paired layers need the same channel counts")
        total = total + lam * (g_t - g_s).pow(2).flatten(1).sum(1).mean()
    return total


def stage_sections(model: nn.Module) -> list[tuple[str, str]]:
    """(F1, F2) module names per FSP section of a task CNN: (pool{k-1}, stage{k}) for k = 2..n."""
    n = getattr(model, "n_stages", None)
    if not n or n < 2:
        raise ValueError(f"{type(model).__name__} has fewer than two convolutional stages: no FSP section")
    return [(f"pool{k - 1}", f"stage{k}") for k in range(2, n + 1)]


def epochs_to_reach(curve: list[float], target: float) -> int | None:
    """1-based first epoch whose validation accuracy reaches ``target``; None if it never does."""
    return next((i + 1 for i, v in enumerate(curve) if v >= target), None)


@register(family="distillation")
class yim2017gift(DistillationMethod):
    arch_roles = ("student_thin_deep",)

    @dataclass
    class Config:
        fsp_epochs_fraction: Annotated[float, Field(gt=0, le=1)] = 0.34   # stage-1 epochs / scratch epochs
        teacher_role: str = "student_thin_deep"   # same widths as the student, deeper
        scratch_control: bool = True              # train the same student from scratch (faster-convergence check)

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        teacher = frozen(ctx.load_trained(c.teacher_role))
        student = ctx.build_student().to(ctx.device)
        sections = stage_sections(student)
        if sections != stage_sections(teacher):
            raise ValueError(f"teacher {c.teacher_role!r} and the student have different stages")
        names = tuple(dict.fromkeys(n for pair in sections for n in pair))
        fsp_values: list[float] = []

        def stage1(s: ModelOutput, _y, t: ModelOutput | None) -> torch.Tensor:
            value = fsp_loss([(s.features[a], s.features[b]) for a, b in sections],
                             [(t.features[a], t.features[b]) for a, b in sections])
            fsp_values.append(value.item())
            return value

        fsp_epochs = max(1, round(c.fsp_epochs_fraction * ctx.epochs_scratch))
        last_only = TrainHooks(selectable=lambda step, total: step == total)   # no task accuracy before stage 2
        fsp_report = distil(ctx, student, stage1, teacher=teacher, epochs=fsp_epochs, feature_layers=names,
                            hooks=last_only, stage="fsp")
        report = distil(ctx, student, lambda s, y, _t: nn.functional.cross_entropy(s.logits, y), stage="task")
        k = max(1, len(fsp_values) // 10)
        extra = dict(fsp_sections=[list(p) for p in sections], fsp_epochs=fsp_report.epochs_run,
                     fsp_loss_first=sum(fsp_values[:k]) / k, fsp_loss_last=sum(fsp_values[-k:]) / k,
                     fsp_val_acc_per_epoch=report.val_acc_per_epoch)
        controls = {}
        if c.scratch_control:
            scratch = ctx.build_student().to(ctx.device)
            scratch_report = ctx.train_fn(scratch, epochs=ctx.epochs_scratch, stage="control:scratch")
            curve = scratch_report.val_acc_per_epoch
            extra.update(scratch_val_acc_per_epoch=curve,
                         epochs_fsp_reaches_scratch_best=epochs_to_reach(report.val_acc_per_epoch, max(curve)),
                         epochs_scratch_reaches_scratch_best=epochs_to_reach(curve, max(curve)))
            controls["scratch"] = compressed(scratch, scratch_report, note="the same student trained from scratch "
                                             "with cross-entropy (control for FSP's faster optimisation)")
        out = compressed(student, report, note="student initialised by matching a deeper same-width teacher's "
                                               "FSP matrices, then trained on the task", **extra)
        out.controls.update(controls)
        return out
