"""Distilling Model Knowledge.

Papamakarios (2015, thesis), arXiv:1510.02437. Key: papamakarios2015distilling.
Implements the thesis's distillation of a discriminative ensemble with derivative matching on
scarce data (Chapter 3, "model compression" with derivative matching):
    The student s mimics the teacher t (an ensemble: the task's cached baselines of
    ``ensemble_seeds``, class probabilities averaged) on a small transfer set by matching the
    outputs and their derivatives with respect to the input:
        L(x) = KL(p_t(x) || p_s(x)) + lambda * || d(u . log p_s(x))/dx - d(u . log p_t(x))/dx ||^2
    u ~ N(0, I) a random projection of the output (one fixed draw per transfer example), so the
    penalty is an unbiased estimate (up to a constant) of the squared Frobenius distance between
    the two Jacobians of the log-probabilities, at the cost of one extra backward pass.
    The transfer set is the first ``transfer_size`` training images (the scarce-data regime);
    the teacher's probabilities and input derivatives are computed once.
    Control ``no-derivatives``: the same student and transfer set with lambda = 0 (plain output
    matching): the thesis's claim is that derivatives help most when data are scarce.
Real: the smaller student. Simulated: nothing.
Deviations: one random projection per example and fixed during training (the thesis matches
derivatives along random directions, redrawn); input-space derivatives of the log-probabilities
(not of the logits); the thesis's other applications (online distillation of MCMC sample bags
into a predictive distribution, distilling RBMs into NADEs) need other model classes and are
omitted; the ensemble is three task baselines; AdamW + cosine (the harness recipe). No control
trains the student on the small set's labels alone (the context gives methods no training labels).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.distillation.bucilua2006model import Ensemble
from mcbench.methods.flows.distill import compressed, distil, frozen
from mcbench.methods.protocols import Compressed, DistillationMethod, MethodContext, ModelOutput
from mcbench.methods.registry import register


def projected_input_gradient(log_probs: torch.Tensor, x: torch.Tensor, u: torch.Tensor,
                             create_graph: bool) -> torch.Tensor:
    """d(sum_k u_k log p_k(x))/dx per example (the vector-Jacobian product u^T J), shape of ``x``."""
    (g,) = torch.autograd.grad((u * log_probs).sum(), x, create_graph=create_graph)
    return g


@torch.no_grad()
def teacher_targets(teacher: nn.Module, x: torch.Tensor, u: torch.Tensor,
                    batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's probabilities and projected input derivatives on ``x`` (computed once)."""
    probs, grads = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].clone().requires_grad_(True)
        with torch.enable_grad():
            logp = F.log_softmax(teacher(xb), 1)
            grads.append(projected_input_gradient(logp, xb, u[i:i + batch_size], create_graph=False))
        probs.append(logp.exp().detach())
    return torch.cat(probs), torch.cat(grads)


def derivative_matching_loss(student_logits: torch.Tensor, x: torch.Tensor, teacher_probs: torch.Tensor,
                             teacher_grad: torch.Tensor, u: torch.Tensor, lam: float) -> torch.Tensor:
    """KL(p_t || p_s) + lam * mean over the batch of ||u^T J_s - u^T J_t||^2 (``x`` requires grad)."""
    logp = F.log_softmax(student_logits, 1)
    kl = F.kl_div(logp, teacher_probs, reduction="batchmean")
    if lam == 0:
        return kl
    g = projected_input_gradient(logp, x, u, create_graph=True)
    return kl + lam * (g - teacher_grad).pow(2).flatten(1).sum(1).mean()


class InputGradTap(nn.Module):
    """Training wrapper: makes the batch require grad (so the loss can differentiate the output with
    respect to it) and keeps it; evaluation passes straight through. Not deployed."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.last_x: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            # a non-leaf view of the batch: autograd.grad to it also works under the harness's
            # FlopCounterMode (its module hooks refuse a leaf input inside autograd.grad)
            x = x.detach().requires_grad_(True) * 1.0
            self.last_x = x
        return self.model(x)


@register(family="distillation")
class papamakarios2015distilling(DistillationMethod):
    @dataclass
    class Config:
        ensemble_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])   # the cumbersome model
        transfer_size: Annotated[int, Field(ge=2)] = 500     # scarce transfer set: first training images
        derivative_weight: Annotated[float, Field(ge=0)] = 1.0   # lambda
        passes_per_budget_epoch: Annotated[int, Field(ge=1)] = 10  # passes over the small set per scratch epoch
        controls: bool = True                                 # the no-derivatives row

    def _train(self, ctx: MethodContext, x: torch.Tensor, probs: torch.Tensor, grads: torch.Tensor,
               u: torch.Tensor, lam: float, epochs: int, stage: str):
        tap = InputGradTap(ctx.build_student())
        index = torch.arange(len(x))

        def loss(s: ModelOutput, idx: torch.Tensor | None, _t: ModelOutput | None) -> torch.Tensor:
            i = idx.cpu()
            return derivative_matching_loss(s.logits, tap.last_x, probs[i].to(s.logits.device),
                                            grads[i].to(s.logits.device), u[i].to(s.logits.device), lam)

        report = distil(ctx, tap, loss, inputs=x, labels=index, epochs=epochs, stage=stage)
        return tap.model, report

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        if not c.ensemble_seeds:
            raise ValueError("papamakarios2015distilling: ensemble_seeds is empty")
        teacher = frozen(Ensemble(ctx.load_baselines(list(c.ensemble_seeds))).to(ctx.device))
        x = torch.cat([b.cpu() for b in ctx.calibration_batches(10 ** 5)])[:c.transfer_size]
        gen = torch.Generator().manual_seed(ctx.seed)
        u = torch.randn(len(x), ctx.num_classes, generator=gen)
        t0 = time.perf_counter()
        probs, grads = teacher_targets(teacher, x.to(ctx.device), u.to(ctx.device))
        probs, grads = probs.cpu(), grads.cpu()
        ctx.ledger.add("teacher_derivatives", seconds=time.perf_counter() - t0, samples=len(x))
        epochs = c.passes_per_budget_epoch * ctx.epochs_scratch
        student, report = self._train(ctx, x, probs, grads, u, c.derivative_weight, epochs, "derivative_matching")
        out = compressed(student, report, note=f"student mimicking an ensemble of {len(c.ensemble_seeds)} baselines' "
                                               f"outputs and input derivatives on {len(x)} training images",
                         transfer_images=len(x), ensemble_seeds=list(c.ensemble_seeds),
                         ensemble_params=sum(p.numel() for p in teacher.parameters()))
        if c.controls:
            plain, plain_report = self._train(ctx, x, probs, grads, u, 0.0, epochs, "control:no-derivatives")
            out.controls["no-derivatives"] = compressed(plain, plain_report, note="the same student and transfer set, "
                                                                                  "outputs matched without derivatives")
        return out

