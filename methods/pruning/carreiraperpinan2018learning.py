""""Learning-Compression" Algorithms for Neural Net Pruning.

Carreira-Perpinan, Idelbayev (2018), CVPR 2018, pp. 8532-8541. Key: carreiraperpinan2018learning.
Implements the LC pruning algorithm (Section 3, Fig. 1's L/C iterations with the C steps below).
On the LC framework of Part I (carreiraperpinan2017model, ``methods/flows/lc.py``), pruning is
    min_w L(w) s.t. w = theta, theta in the sparse set (constraint forms) or
    min_w L(w) + alpha C(theta) (penalty forms),
and the C step (Section 3, "C step" for each form) is an exact projection/proximal map of
v = w - lambda/mu, taken over all layers' weights jointly (one budget: the per-layer sparsity is
found by the algorithm, not set by hand):
    l0 constraint  ||theta||_0 <= kappa :  keep the kappa entries of v largest in |v|, zero the rest;
    l1 constraint  ||theta||_1 <= kappa :  soft threshold at the tau with ||theta||_1 = kappa
                                           (Euclidean projection onto the l1 ball);
    l0 penalty     alpha ||theta||_0    :  hard threshold, keep |v| > sqrt(2 alpha / mu);
    l1 penalty     alpha ||theta||_1    :  soft threshold at alpha / mu.
The L step is the harness's training loop on L(w) + mu/2 ||w - theta - lambda/mu||^2, with
mu_k = mu_0 a^k growing over the LC iterations; the first C step on the reference net is
magnitude pruning (direct compression); the result is theta of the last C step (no retraining).
Real: storage (the sparse file: float32 nonzeros + Huffman-coded relative indices, measured and
decoded by the harness). Simulated: nothing else is claimed; no dense speedup (zeros on dense kernels).
Deviations: each L step is one run of the harness's loop (AdamW, cosine schedule restarted per L
step) for one epoch instead of SGD with a learning rate decaying across steps; the schedule has
few iterations with a large growth factor (4 L steps, mu = 0.05, 0.5, 5, 50) instead of the
paper's many small ones; biases and BN parameters are not pruned (as in the paper, weights only). For the l1
constraint kappa is a fraction of the reference net's l1 norm (``keep_fraction``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from mcbench.methods.flows import lc, prune
from mcbench.methods.protocols import Compressed, MethodContext, PruningMethod
from mcbench.methods.pruning._unstructured import prunable_layers, sparse_compressed
from mcbench.methods.registry import register

FORMS = ("l0_constraint", "l1_constraint", "l0_penalty", "l1_penalty")


# --------------------------------------------------------------------------- C steps (exact)
def l0_constraint(v: torch.Tensor, kappa: int) -> torch.Tensor:
    """argmin ||v - theta||^2 s.t. ||theta||_0 <= kappa: the kappa largest |v| kept."""
    theta = torch.zeros_like(v)
    if kappa > 0:
        idx = torch.topk(v.abs(), min(kappa, v.numel()), sorted=False).indices
        theta[idx] = v[idx]
    return theta


def l1_constraint(v: torch.Tensor, kappa: float) -> torch.Tensor:
    """argmin ||v - theta||^2 s.t. ||theta||_1 <= kappa: soft threshold at the tau giving ||theta||_1 = kappa."""
    a = v.abs()
    if float(a.sum()) <= kappa:
        return v.clone()
    u = a.sort(descending=True).values
    css = u.cumsum(0)
    j = torch.arange(1, len(u) + 1, dtype=u.dtype, device=u.device)
    rho = int(torch.nonzero(u > (css - kappa) / j).max())
    tau = (css[rho] - kappa) / (rho + 1)
    return torch.sign(v) * (a - tau).clamp(min=0)


def l0_penalty(v: torch.Tensor, alpha: float, mu: float) -> torch.Tensor:
    """argmin mu/2 ||v - theta||^2 + alpha ||theta||_0: hard threshold at sqrt(2 alpha / mu)."""
    return torch.where(v.abs() > (2.0 * alpha / mu) ** 0.5, v, torch.zeros_like(v))


def l1_penalty(v: torch.Tensor, alpha: float, mu: float) -> torch.Tensor:
    """argmin mu/2 ||v - theta||^2 + alpha ||theta||_1: soft threshold at alpha / mu."""
    return torch.sign(v) * (v.abs() - alpha / mu).clamp(min=0)


def _flat(v: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.flatten() for t in v.values()])


def _unflat(x: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for n, t in like.items():
        out[n] = x[i:i + t.numel()].view_as(t)
        i += t.numel()
    return out


def joint_c_step(form: str, kappa: float, alpha: float) -> lc.CStep:
    """The C step over all layers jointly (one sparsity budget for the whole net)."""
    def step(v: dict[str, torch.Tensor], mu: float) -> dict[str, torch.Tensor]:
        x = _flat(v)
        if form == "l0_constraint":
            theta = l0_constraint(x, int(kappa))
        elif form == "l1_constraint":
            theta = l1_constraint(x, kappa)
        elif form == "l0_penalty":
            theta = l0_penalty(x, alpha, mu)
        else:
            theta = l1_penalty(x, alpha, mu)
        return _unflat(theta, v)
    return step


# --------------------------------------------------------------------------- the paper
@register(family="pruning")
class carreiraperpinan2018learning(PruningMethod):
    structured = False

    @dataclass
    class Config:
        form: Literal["l0_constraint", "l1_constraint", "l0_penalty", "l1_penalty"] = "l0_constraint"
        keep_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1    # kappa: fraction of weights (l0) / of l1 norm kept
        keep_control: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05    # a second level (0: none), same form
        alpha: Annotated[float, Field(gt=0.0)] = 1e-4                   # penalty forms: alpha
        lc_iterations: Annotated[int, Field(ge=1, le=60)] = 4           # L steps (one epoch each)
        mu0: Annotated[float, Field(gt=0.0)] = 0.05
        mu_growth: Annotated[float, Field(gt=1.0)] = 10.0               # a: mu_k = mu0 a^k

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        # the curve's knob: the weight sparsity (l0 constraint) or the fraction of the l1 norm kept
        knob, conv = ("sparsity", lambda v: 1.0 - v) if c.form == "l0_constraint" else ("l1_norm_kept", lambda v: v)
        second = conv(c.keep_control) if c.keep_control and c.form in ("l0_constraint", "l1_constraint") else 0.0
        return prune.at_levels(lambda v: self._run(ctx, conv(v)), knob, conv(c.keep_fraction), second)

    def _run(self, ctx: MethodContext, keep: float) -> Compressed:
        c = self.config
        model = ctx.load_baseline().to(ctx.device)
        layers = {n: model.get_submodule(n) for n in prunable_layers(model)}
        weights = _flat({n: m.weight.detach() for n, m in layers.items()})
        kappa = round(keep * weights.numel()) if c.form == "l0_constraint" else keep * float(weights.abs().sum())
        run = lc.learning_compression(ctx, model, layers, joint_c_step(c.form, kappa, c.alpha),
                                      iterations=c.lc_iterations,
                                      mu0=c.mu0, growth=c.mu_growth)
        masks = {n: (m.weight.detach() != 0).cpu() for n, m in layers.items()}
        kept = sum(int(m.sum()) for m in masks.values())
        extra = {"lc_form": c.form, "lc_mu_final": run.mus[-1], "lc_gap_final": run.gaps[-1],
                 "weights_kept_count": kept, "keep_fraction_target": keep,
                 "zeros_fraction_per_layer": {n: 1.0 - float(m.float().mean()) for n, m in masks.items()}}
        return sparse_compressed(model, masks, ctx.build_baseline, report=run.report, extra=extra,
                                 note=f"LC pruning ({c.form}, kappa {keep:.0%} of the net), weights = theta "
                                      "of the last C step")
