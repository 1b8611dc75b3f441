"""Zero-Shot Knowledge Distillation in Deep Networks.

Nayak, Mopuri, Shaj, Babu, Chakraborty (ICML 2019), arXiv:1905.08114. Key: nayak2019zero.
Implements data impressions (Section 3, Algorithm 1) and zero-shot KD (Section 3.3):
    Class similarity (Section 3.1): C(i, j) = w_i^T w_j / (||w_i|| ||w_j||), w_k the teacher's final
        layer weights of class k; each row min-max normalised to [0, 1].
    Soft labels (Section 3.2): for class k, y ~ Dir(beta * C(k, :)), with the two scaling factors
        beta = 1.0 and 0.1 (half of the impressions each).
    Data impression (Eq. (2)): x* = argmin_x CE(y, softmax(T(x) / tau)), tau = 20, from uniform
        noise, Adam on the pixels.
    Zero-shot KD (Eq. (3)): the task's student trained on the impressions only with
        tau^2 KL(softmax(z_T / tau) || softmax(z_S / tau)) (no labels, no real data: the method is
        data-free and the harness withholds the training split).
Real: the synthesis and the smaller student. Simulated: nothing.
Deviations: ``num_impressions`` = 512 at ``iterations`` = 80 Adam steps (paper: 24,000 impressions
at 1,500 iterations for MNIST); pixels clamped to [0, 1] after each step; no augmentation of the
impressions. The student trains for ``kd_epochs_per_budget_epoch`` passes over the impressions
per scratch epoch of the budget, and the last epoch is kept (no real data selects the model).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.distillation.hinton2015distilling import kd_loss
from mcbench.methods.flows.distill import compressed, distil, frozen
from mcbench.methods.protocols import Compressed, DistillationMethod, MethodContext, ModelOutput
from mcbench.methods.registry import register


def final_layer_weights(model: nn.Module) -> torch.Tensor:
    """(classes, features) weight of the last Linear layer."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no linear classifier: no class similarity")
    return linears[-1].weight.detach()


def class_similarity(w: torch.Tensor) -> torch.Tensor:
    """Section 3.1: cosine similarity of class weight vectors, each row min-max normalised to [0, 1]."""
    u = F.normalize(w, dim=1)
    c = u @ u.T
    lo, hi = c.min(1, keepdim=True).values, c.max(1, keepdim=True).values
    return (c - lo) / (hi - lo).clamp_min(1e-12)


def dirichlet_targets(similarity: torch.Tensor, per_class: int, betas: tuple[float, ...],
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft labels y ~ Dir(beta C(k, :)), ``per_class`` per class split evenly over ``betas``;
    returns (targets (N, K), classes (N,))."""
    k = similarity.shape[0]
    ys, classes = [], []
    for cls in range(k):
        for i, beta in enumerate(betas):
            n = per_class // len(betas) + (1 if i < per_class % len(betas) else 0)
            if n == 0:
                continue
            conc = (beta * similarity[cls]).clamp_min(1e-3)   # the min-max row has a zero; Dir needs > 0
            gamma = torch._standard_gamma(conc.expand(n, k).contiguous(), generator=generator)
            ys.append(gamma / gamma.sum(1, keepdim=True))
            classes.append(torch.full((n,), cls))
    return torch.cat(ys), torch.cat(classes)


@dataclass
class Impressions:
    images: torch.Tensor
    targets: torch.Tensor          # the sampled soft labels
    classes: torch.Tensor          # the class each label was sampled for
    objective_first: float         # mean CE(y, teacher(x)/tau) at the first and the last iteration
    objective_last: float
    seconds: float
    image_iterations: int


def data_impressions(teacher: nn.Module, targets: torch.Tensor, shape: tuple[int, ...], *, iterations: int,
                     batch_size: int, lr: float, temperature: float, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, float, float, float]:
    """Eq. (2) for each soft label: (images in [0, 1], first objective, last objective, seconds)."""
    frozen(teacher)
    t0 = time.perf_counter()
    images, firsts, lasts = [], [], []
    for start in range(0, len(targets), batch_size):
        y = targets[start:start + batch_size].to(device)
        x = torch.rand(len(y), *shape, generator=generator).to(device).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        for it in range(iterations):
            objective = F.cross_entropy(teacher(x) / temperature, y)
            opt.zero_grad(set_to_none=True)
            objective.backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
            if it == 0:
                firsts.append(objective.item())
        with torch.no_grad():
            lasts.append(F.cross_entropy(teacher(x) / temperature, y).item())
        images.append(x.detach())
    return torch.cat(images), sum(firsts) / len(firsts), sum(lasts) / len(lasts), time.perf_counter() - t0


@register(family="distillation")
class nayak2019zero(DistillationMethod):
    data_free = True

    @dataclass
    class Config:
        num_impressions: Annotated[int, Field(ge=1)] = 512      # paper: 24,000 (MNIST)
        iterations: Annotated[int, Field(ge=1)] = 80            # Adam steps per batch (paper: 1,500)
        batch_size: Annotated[int, Field(ge=1)] = 128
        lr: Annotated[float, Field(gt=0)] = 0.05                # Adam on the pixels (paper: 0.01 over 1,500 steps)
        temperature: Annotated[float, Field(gt=0)] = 20.0       # tau, synthesis and KD (paper: 20)
        beta_high: Annotated[float, Field(gt=0)] = 1.0          # the two Dirichlet scaling factors
        beta_low: Annotated[float, Field(gt=0)] = 0.1
        kd_epochs_per_budget_epoch: Annotated[int, Field(ge=1)] = 15

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        teacher = frozen(ctx.load_teacher())
        gen = torch.Generator().manual_seed(ctx.seed)
        sim = class_similarity(final_layer_weights(teacher).cpu())
        per_class = max(1, c.num_impressions // ctx.num_classes)
        targets, classes = dirichlet_targets(sim, per_class, (c.beta_high, c.beta_low), gen)
        images, first, last, seconds = data_impressions(
            teacher, targets, (ctx.in_chans, *ctx.input_size), iterations=c.iterations, batch_size=c.batch_size,
            lr=c.lr, temperature=c.temperature, device=ctx.device, generator=gen)
        ctx.ledger.add("data_impressions", seconds=seconds, samples=len(images) * c.iterations)
        self.impressions = Impressions(images, targets, classes, first, last, seconds, len(images) * c.iterations)
        with torch.no_grad():
            agree = (teacher(images).argmax(1).cpu() == classes).float().mean().item() * 100

        def loss(s: ModelOutput, _y: torch.Tensor | None, t: ModelOutput | None) -> torch.Tensor:
            return kd_loss(s.logits, t.logits, None, c.temperature, 0.0)

        student = ctx.build_student()
        report = distil(ctx, student, loss, teacher=teacher, inputs=images.cpu(), labels=None,
                        epochs=c.kd_epochs_per_budget_epoch * ctx.epochs_scratch, stage="kd_impressions")
        return compressed(student, report, note="student distilled on data impressions synthesised from the "
                                                "teacher's class similarity (zero-shot; no real training data)",
                          impressions=len(images), impression_iterations=c.iterations,
                          impression_objective_first=first, impression_objective_last=last,
                          impression_teacher_agreement_pct=agree)
