"""Like What You Like: Knowledge Distill via Neuron Selectivity Transfer.

Huang, Wang (2017), arXiv:1707.01219. Key: huang2017like.
Implements neuron selectivity transfer (Section 3, Eqs. (2)-(5)) combined with KD (Section 4, "NST+KD"):
    A feature map F in R^{C x HW} is read as C samples f^{k.} in R^{HW} (one per channel: where
    that neuron fires), each l2-normalised. The squared Maximum Mean Discrepancy between the
    teacher's C_T samples and the student's C_S samples (Eq. (3)),
        L_MMD^2 = 1/C_T^2 sum_{i,i'} k(f_T^i, f_T^i') + 1/C_S^2 sum_{j,j'} k(f_S^j, f_S^j')
                  - 2/(C_T C_S) sum_{i,j} k(f_T^i, f_S^j),
    with the paper's kernels (Section 3.3): linear k(x, y) = x^T y; polynomial
    k(x, y) = (x^T y + c)^d, d = 2, c = 0; Gaussian k(x, y) = exp(-||x - y||^2 / (2 sigma^2)),
    sigma^2 the mean squared distance of the pairs. Per image, averaged over the batch.
    Loss (Eq. (5), plus the KD term of hinton2015distilling for NST+KD):
        L = alpha CE(y, p_S) + (1 - alpha) T^2 KL(p_T^T || p_S^T) + lambda / 2 * L_MMD^2
    alpha = 1 gives NST alone (Eq. (5)). Channels of teacher and student may differ; the spatial
    size must match (the task CNNs' last stages have the same size).
Real: the loss and the training of the smaller student. Simulated: nothing.
Deviations: one transfer point, the output of the last stage (after its ReLU), as in the paper's
CIFAR networks where NST is applied to the last group's output; lambda = 50 by default (the paper's
weight for the linear and polynomial kernels as we read Section 4.1; it is a config field). The
Gaussian sigma^2 is taken per image from all pairs of the three kernel matrices, detached (the
paper says only "the mean squared distance of the pairs"). KD uses T = 4 and alpha = 0.5 as the
hinton2015distilling row does (the paper's KD weights are ImageNet-specific). AdamW + cosine
(the harness recipe) instead of SGD with momentum.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from mcbench.methods.distillation.hinton2015distilling import kd_loss
from mcbench.methods.flows.distill import compressed, distil, frozen
from mcbench.methods.protocols import Compressed, DistillationMethod, MethodContext, ModelOutput
from mcbench.methods.registry import register

Kernel = Literal["linear", "poly", "gaussian"]


def selectivity_samples(feature: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, HW): one l2-normalised spatial activation vector per channel."""
    if feature.dim() != 4:
        raise ValueError(f"NST needs convolutional feature maps (B, C, H, W), got shape {tuple(feature.shape)}")
    return F.normalize(feature.flatten(2), dim=2)


def _gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a @ b.transpose(1, 2)   # (B, Ca, Cb) inner products


def mmd2(f_s: torch.Tensor, f_t: torch.Tensor, kernel: Kernel = "poly", degree: int = 2, c: float = 0.0) -> torch.Tensor:
    """Eq. (3): squared MMD between the channel samples of ``f_s`` and ``f_t`` (B, C, H, W), batch mean."""
    if f_s.shape[2:] != f_t.shape[2:]:
        raise ValueError(f"NST compares spatial maps: student {tuple(f_s.shape[2:])} vs teacher {tuple(f_t.shape[2:])}")
    s, t = selectivity_samples(f_s), selectivity_samples(f_t)
    ss, tt, st = _gram(s, s), _gram(t, t), _gram(s, t)
    if kernel == "linear":
        k_ss, k_tt, k_st = ss, tt, st
    elif kernel == "poly":
        k_ss, k_tt, k_st = (ss + c) ** degree, (tt + c) ** degree, (st + c) ** degree
    elif kernel == "gaussian":
        # squared distances from inner products of unit vectors: ||x - y||^2 = 2 - 2 x^T y
        d_ss, d_tt, d_st = 2 - 2 * ss, 2 - 2 * tt, 2 - 2 * st
        sigma2 = torch.cat([d_ss.flatten(1), d_tt.flatten(1), d_st.flatten(1)], 1).mean(1).detach()
        sigma2 = sigma2.clamp_min(1e-8).view(-1, 1, 1)
        k_ss, k_tt, k_st = (torch.exp(-d / (2 * sigma2)) for d in (d_ss, d_tt, d_st))
    else:
        raise ValueError(f"unknown NST kernel {kernel!r}; expected linear, poly or gaussian")
    per_image = k_tt.mean((1, 2)) + k_ss.mean((1, 2)) - 2 * k_st.mean((1, 2))
    return per_image.mean()


def nst_loss(student: ModelOutput, targets: torch.Tensor | None, teacher: ModelOutput, *, s_layer: str, t_layer: str,
             kernel: Kernel, lam: float, temperature: float, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha CE + (1 - alpha) T^2 KL + lambda/2 MMD^2, MMD^2): Eq. (5) with the KD term."""
    m = mmd2(student.features[s_layer], teacher.features[t_layer], kernel)
    return kd_loss(student.logits, teacher.logits, targets, temperature, alpha) + 0.5 * lam * m, m


def last_stage(model) -> str:
    n = getattr(model, "n_stages", None)
    if not n:
        raise ValueError(f"{type(model).__name__} has no convolutional stages: NST needs feature maps; "
                         "set student_layer/teacher_layer")
    return f"stage{n}"


@register(family="distillation")
class huang2017like(DistillationMethod):
    @dataclass
    class Config:
        kernel: Kernel = "poly"                                 # Section 3.3; the paper's best: poly, d=2, c=0
        lam: Annotated[float, Field(ge=0)] = 50.0               # lambda, weight of the MMD term
        temperature: Annotated[float, Field(gt=0)] = 4.0        # KD temperature
        alpha: Annotated[float, Field(ge=0, le=1)] = 0.5        # weight of CE; 1.0 = NST without KD
        student_layer: str = ""                                 # "" = the student's last stage
        teacher_layer: str = ""                                 # "" = the teacher's last stage

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        teacher = frozen(ctx.load_teacher())
        student = ctx.build_student()
        s_layer, t_layer = c.student_layer or last_stage(student), c.teacher_layer or last_stage(teacher)
        mmd_values: list[float] = []

        def loss(s: ModelOutput, y: torch.Tensor | None, t: ModelOutput | None) -> torch.Tensor:
            value, m = nst_loss(s, y, t, s_layer=s_layer, t_layer=t_layer, kernel=c.kernel, lam=c.lam,
                                temperature=c.temperature, alpha=c.alpha)
            mmd_values.append(m.item())
            return value

        report = distil(ctx, student, loss, teacher=teacher, feature_pairs=((s_layer, t_layer),), stage="nst")
        k = max(1, len(mmd_values) // 10)
        note = "smaller student trained by neuron selectivity transfer (MMD of channel activation maps)" + (
            " plus KD" if c.alpha < 1 else "")
        return compressed(student, report, note=note, nst_layers=[s_layer, t_layer],
                          mmd2_first=sum(mmd_values[:k]) / k, mmd2_last=sum(mmd_values[-k:]) / k)
