"""Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion.

Yin, Molchanov, Li, Alvarez, Mallya, Hoiem, Jha, Kautz (2019/CVPR 2020), arXiv:1912.08795.
Key: yin2019dreaming.
Implements DeepInversion (Section 3.2, Eqs. (3)-(4)) and data-free knowledge transfer (Section 4):
    x* = argmin_x  CE(f_T(x~), y) + R(x~),   x~: x randomly jittered (shifted) each iteration,
    R(x) = alpha_tv R_TV(x) + alpha_l2 R_l2(x) + alpha_f R_feature(x)
    R_feature(x) = sum_l || mu_l(x) - E[mu_l | BN_l] ||_2 + || sigma_l^2(x) - E[sigma_l^2 | BN_l] ||_2,
    mu_l, sigma_l^2: batch mean and variance of the input of the teacher's l-th BatchNorm; the
    expectations are that BN's running statistics (Eq. (4)). y: target classes, balanced.
    Then the task's student is trained by KD on the synthesised images only (no real training
    data: the method is data-free and the harness withholds the training split), with the loss
    of hinton2015distilling: T^2 KL(softmax(z_t/T) || softmax(z_s/T)) (alpha = 0: no labels).
Real: the synthesis and the smaller student. Simulated: nothing.
Deviations: Adaptive DeepInversion's competition term (Section 3.3) is not implemented. The
synthesis is capped at ``iterations`` = 80 Adam steps per batch (paper: 2k) and makes
``num_images`` = 512 images (paper: tens of thousands): on Fashion-MNIST at the default budget
synthesis plus KD process about 2.5x the teacher-and-student MACs of KD on the real split
(estimate from image-iterations; each row's cost ledger holds the measured seconds). R_TV is the mean
absolute difference of neighbouring pixels and R_l2 the mean squared pixel, both per image
(scale-free versions of the paper's norms), pixels are kept in [0, 1] by clamping after each
step, jitter is a random roll of up to ``jitter_px`` pixels and there are no flips (digits and
clothes are not mirror-symmetric). The student trains for ``kd_epochs_per_budget_epoch`` passes
over the synthetic set per scratch epoch of the budget (the real-data KD row passes over the
real set ``epochs_scratch`` times). In data-free mode the harness keeps the last epoch
(validation does not select the model).
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


class BNStatistics:
    """R_feature: distance of each BatchNorm input's batch statistics to the BN's running ones."""

    def __init__(self, model: nn.Module) -> None:
        self.terms: list[torch.Tensor] = []
        self._handles = [m.register_forward_hook(self._hook) for m in model.modules()
                         if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not self._handles:
            raise ValueError(f"{type(model).__name__} has no BatchNorm layer: DeepInversion's R_feature needs one")

    def _hook(self, bn: nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        x = inp[0]
        dims = [0] + list(range(2, x.dim()))
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        self.terms.append(torch.linalg.vector_norm(mean - bn.running_mean) + torch.linalg.vector_norm(var - bn.running_var))

    def pop(self) -> torch.Tensor:
        value = torch.stack(self.terms).sum()
        self.terms = []
        return value

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of horizontally and vertically neighbouring pixels."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


@dataclass
class SynthesisResult:
    images: torch.Tensor          # (N, C, H, W) in [0, 1]
    targets: torch.Tensor         # the classes the images were synthesised for
    objective_first: float        # the full objective at the first and the last iteration, averaged over batches
    objective_last: float
    bn_first: float               # R_feature alone, first and last iteration
    bn_last: float
    teacher_agreement_pct: float  # share of images the teacher classifies as their target
    seconds: float
    image_iterations: int         # images x iterations (teacher forward + backward passes)


def synthesize(teacher: nn.Module, num_images: int, num_classes: int, shape: tuple[int, ...], *, iterations: int,
               batch_size: int, lr: float, alpha_f: float, alpha_tv: float, alpha_l2: float, jitter_px: int,
               device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> SynthesisResult:
    """DeepInversion: optimise random images against the frozen teacher (Eqs. (3)-(4))."""
    frozen(teacher)
    stats = BNStatistics(teacher)
    targets = torch.arange(num_images) % num_classes
    images, firsts, lasts, bn_firsts, bn_lasts = [], [], [], [], []
    t0 = time.perf_counter()
    try:
        for start in range(0, num_images, batch_size):
            y = targets[start:start + batch_size].to(device)
            x = torch.rand(len(y), *shape, generator=generator).to(device).requires_grad_(True)
            opt = torch.optim.Adam([x], lr=lr, betas=(0.5, 0.9))
            for it in range(iterations):
                dx, dy = (torch.randint(-jitter_px, jitter_px + 1, (2,), generator=generator).tolist()
                          if jitter_px else (0, 0))
                xj = torch.roll(x, shifts=(dx, dy), dims=(2, 3))
                logits = teacher(xj)
                r_feature = stats.pop()
                objective = (F.cross_entropy(logits, y) + alpha_f * r_feature
                             + alpha_tv * total_variation(x) + alpha_l2 * x.pow(2).mean())
                opt.zero_grad(set_to_none=True)
                objective.backward()
                opt.step()
                with torch.no_grad():
                    x.clamp_(0.0, 1.0)
                if it == 0:
                    firsts.append(objective.item())
                    bn_firsts.append(r_feature.item())
            lasts.append(objective.item())
            bn_lasts.append(r_feature.item())
            images.append(x.detach())
    finally:
        stats.close()
    x_all = torch.cat(images)
    with torch.no_grad():
        agree = (teacher(x_all).argmax(1).cpu() == targets).float().mean().item() * 100
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return SynthesisResult(x_all, targets, mean(firsts), mean(lasts), mean(bn_firsts), mean(bn_lasts), agree,
                           time.perf_counter() - t0, num_images * iterations)


@register(family="distillation")
class yin2019dreaming(DistillationMethod):
    data_free = True

    @dataclass
    class Config:
        num_images: Annotated[int, Field(ge=1)] = 512            # synthesised images (paper: tens of thousands)
        iterations: Annotated[int, Field(ge=1)] = 80             # Adam steps per batch, the stated cap (paper: 2k)
        batch_size: Annotated[int, Field(ge=1)] = 128            # images optimised together (BN statistics batch)
        lr: Annotated[float, Field(gt=0)] = 0.05                 # Adam on the pixels
        alpha_f: Annotated[float, Field(ge=0)] = 1.0             # weight of R_feature (BN statistics)
        alpha_tv: Annotated[float, Field(ge=0)] = 0.5            # weight of R_TV
        alpha_l2: Annotated[float, Field(ge=0)] = 0.01           # weight of R_l2
        jitter_px: Annotated[int, Field(ge=0)] = 2               # random roll of up to this many pixels
        temperature: Annotated[float, Field(gt=0)] = 4.0         # KD temperature (as hinton2015distilling)
        kd_epochs_per_budget_epoch: Annotated[int, Field(ge=1)] = 15  # passes over the synthetic set per scratch epoch

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        teacher = frozen(ctx.load_teacher())
        gen = torch.Generator().manual_seed(ctx.seed)
        syn = synthesize(teacher, c.num_images, ctx.num_classes, (ctx.in_chans, *ctx.input_size),
                         iterations=c.iterations, batch_size=c.batch_size, lr=c.lr, alpha_f=c.alpha_f,
                         alpha_tv=c.alpha_tv, alpha_l2=c.alpha_l2, jitter_px=min(c.jitter_px, min(ctx.input_size) // 4),
                         device=ctx.device, generator=gen)
        ctx.ledger.add("synthesis", seconds=syn.seconds, samples=syn.image_iterations)
        self.synthesis = syn

        def loss(s: ModelOutput, _y: torch.Tensor | None, t: ModelOutput | None) -> torch.Tensor:
            return kd_loss(s.logits, t.logits, None, c.temperature, 0.0)

        student = ctx.build_student()
        report = distil(ctx, student, loss, teacher=teacher, inputs=syn.images.cpu(), labels=None,
                        epochs=c.kd_epochs_per_budget_epoch * ctx.epochs_scratch, stage="kd_synthetic")
        return compressed(student, report, note="student distilled on images synthesised from the teacher only "
                                                "(DeepInversion; data-free: no real training data)",
                          synthetic_images=c.num_images, synthesis_iterations=c.iterations,
                          synthesis_objective_first=syn.objective_first, synthesis_objective_last=syn.objective_last,
                          synthesis_bn_first=syn.bn_first, synthesis_bn_last=syn.bn_last,
                          synthesis_teacher_agreement_pct=syn.teacher_agreement_pct)
