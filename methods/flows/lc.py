"""The learning-compression (LC) loop of Carreira-Perpinan (2017), Part I (carreiraperpinan2017model).

Compressing a trained net is the constrained problem  min_w L(w) s.t. w = Delta(Theta), solved by an
augmented Lagrangian with a penalty mu that grows, mu_k = mu_0 a^k (Part I, Section 4, Fig. 4):

    Theta = C(w, mu)                                        direct compression (the first C step)
    for k = 0, 1, ...:
        L step: min_w L(w) + mu_k/2 ||w - Delta(Theta) - lambda/mu_k||^2   (one run of ``ctx.train_fn``)
        C step: Theta = argmin_Theta ||w - lambda/mu_k - Delta(Theta)||^2  (+ a penalty term in penalty forms)
        lambda <- lambda - mu_k (w - Delta(Theta))
    the result is Delta(Theta) of the last C step (a feasible, compressed net).

The L step is the same for every compression; the C step is the compression's own projection, given
as ``c_step({layer: w - lambda/mu}, mu) -> {layer: Delta(Theta)}``. Papers using it:
``carreiraperpinan2017modelii`` (codebook quantization) and ``carreiraperpinan2018learning`` (pruning).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mcbench.methods.protocols import MethodContext, ModelOutput, TrainReport

CStep = Callable[[dict[str, torch.Tensor], float], dict[str, torch.Tensor]]


def mu_schedule(mu0: float, growth: float, iterations: int) -> list[float]:
    """mu_k = mu0 * growth^k for k = 0..iterations-1 (the penalty of each L step)."""
    return [mu0 * growth ** k for k in range(iterations)]


@dataclass
class LCRun:
    targets: dict[str, torch.Tensor]            # Delta(Theta) of the last C step, per layer (now the weights)
    report: TrainReport | None                  # the last L step's training report
    mus: list[float] = field(default_factory=list)      # mu of each L step, in order
    gaps: list[float] = field(default_factory=list)     # ||w - Delta(Theta)||^2 after each L and C step


def lc_penalty(layers: dict[str, nn.Module], targets: dict[str, torch.Tensor], lam: dict[str, torch.Tensor],
               mu: float) -> torch.Tensor:
    """mu/2 * sum over layers of ||w - Delta(Theta) - lambda/mu||^2 (the L step's quadratic term)."""
    return 0.5 * mu * sum(((m.weight - targets[n] - lam[n] / mu) ** 2).sum() for n, m in layers.items())


def learning_compression(ctx: MethodContext, model: nn.Module, layers: dict[str, nn.Module], c_step: CStep, *,
                         iterations: int, mu0: float, growth: float, multipliers: bool = True,
                         epochs_per_step: int = 1, stage: str = "L-step") -> LCRun:
    """Run the LC loop on ``model`` in place; the named ``layers``' weights end equal to Delta(Theta).

    ``multipliers=False`` is the quadratic-penalty variant (lambda stays 0). Each L step is one call of
    ``ctx.train_fn`` (``epochs_per_step`` epochs) on cross-entropy plus ``lc_penalty``.
    """
    lam = {n: torch.zeros_like(m.weight) for n, m in layers.items()}

    def compress(mu: float) -> dict[str, torch.Tensor]:
        return c_step({n: (m.weight.detach() - lam[n] / mu) for n, m in layers.items()}, mu)

    mus = mu_schedule(mu0, growth, iterations)
    targets = compress(mu0)
    run = LCRun(targets, None, mus=[], gaps=[])
    for it, mu in enumerate(mus):
        def loss(out: ModelOutput, y: torch.Tensor, teacher, mu=mu, targets=targets) -> torch.Tensor:
            return F.cross_entropy(out.logits, y) + lc_penalty(layers, targets, lam, mu)

        run.report = ctx.train_fn(model, epochs=epochs_per_step, loss=loss, stage=f"{stage}-{it + 1}")
        run.mus.append(mu)
        targets = compress(mu)
        with torch.no_grad():
            if multipliers:
                for n, m in layers.items():
                    lam[n] -= mu * (m.weight - targets[n])
            run.gaps.append(float(sum(((m.weight - targets[n]) ** 2).sum() for n, m in layers.items())))
    with torch.no_grad():
        for n, m in layers.items():
            m.weight.copy_(targets[n])
    run.targets = targets
    return run
