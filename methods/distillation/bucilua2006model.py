"""Model Compression.

Bucilua, Caruana, Niculescu-Mizil (KDD 2006), DOI 10.1145/1150402.1150464. Key: bucilua2006model.
Implements model compression with MUNGE pseudo-data (Section 3.3, Figure 2):
    MUNGE(T, k, p, s): for each of k rounds, for each example e of the (unlabelled) set T, find
    its nearest neighbour e' (Euclidean); for every attribute a, with probability p swap values
    between e and e' by sampling (continuous attributes)
        e_a <- Normal(e'_a, sd = |e_a - e'_a| / s),   e'_a <- Normal(e_a, sd = |e_a - e'_a| / s).
    The k perturbed copies of T form the pseudo data. An ensemble (here: the task's cached
    baselines of ``ensemble_seeds``, probabilities averaged) labels real plus pseudo data, and
    the small model (the task's student) is trained to mimic the ensemble's predicted class
    probabilities on them (Section 2).
    The ensemble itself is a control row (``ensemble``): its accuracy, size and latency are
    measured beside the student's, the cost the paper compresses away.
Real: the smaller student. Simulated: nothing.
Deviations: attributes are pixels, perturbed independently (the paper's tabular attributes);
pseudo samples are clipped to each pixel's range in the real data (a pixel never leaves the
observed range). The MUNGE source is the first ``munge_source`` training images, nearest
neighbours among them (the paper uses the whole training set). The student is trained with
KL(ensemble probabilities || student) (soft cross-entropy; the paper trains neural nets with
squared error on the ensemble's outputs) on the real training images plus the pseudo data, for
ceil(epochs_scratch x |real| / |real + pseudo|) passes over the union (about the student-alone
row's number of training samples). The ensemble is three task baselines, not the
paper's selection from 2,000 models of many kinds.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from mcbench.methods.distillation.hinton2015distilling import kd_loss
from mcbench.methods.flows.distill import compressed, distil, frozen
from mcbench.methods.protocols import Compressed, DistillationMethod, MethodContext, ModelOutput
from mcbench.methods.registry import register


def nearest_neighbours(x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Index of each row's nearest other row (Euclidean), computed in chunks."""
    flat = x.flatten(1)
    out = torch.empty(len(flat), dtype=torch.long)
    for i in range(0, len(flat), chunk):
        d = torch.cdist(flat[i:i + chunk], flat)
        d[torch.arange(d.shape[0]), torch.arange(i, i + d.shape[0])] = float("inf")   # not itself
        out[i:i + chunk] = d.argmin(1)
    return out


def munge(x: torch.Tensor, k: int, p: float, s: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """k MUNGE rounds over ``x`` (N, ...): (k N, ...) pseudo examples, clipped to each attribute's range."""
    if len(x) < 2:
        raise ValueError("MUNGE needs at least two examples (nearest neighbours)")
    flat = x.flatten(1)
    lo, hi = flat.min(0).values, flat.max(0).values
    nn_idx = nearest_neighbours(x)
    rounds = []
    for _ in range(k):
        e, other = flat.clone(), flat[nn_idx].clone()
        swap = torch.rand(e.shape, generator=generator) < p
        sd = (e - other).abs() / s
        new_e = other + torch.randn(e.shape, generator=generator) * sd
        e = torch.where(swap, new_e, e)
        rounds.append(torch.maximum(torch.minimum(e, hi), lo))
    return torch.cat(rounds).view(k * len(x), *x.shape[1:])


class Ensemble(nn.Module):
    """Averages the members' class probabilities; returns their log (logits up to a constant)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(x).softmax(1) for m in self.members]).mean(0)
        return probs.clamp_min(1e-12).log()


@register(family="distillation")
class bucilua2006model(DistillationMethod):
    @dataclass
    class Config:
        ensemble_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])   # cached baselines averaged
        munge_source: Annotated[int, Field(ge=2)] = 2000     # training images MUNGE perturbs
        rounds: Annotated[int, Field(ge=1)] = 4              # k: pseudo set = k x munge_source
        swap_prob: Annotated[float, Field(gt=0, le=1)] = 0.5  # p (the paper's choice for most sets)
        local_var: Annotated[float, Field(gt=0)] = 1.0       # s (sd = |e_a - e'_a| / s)
        ensemble_control: bool = True                        # measure the ensemble as a control row

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        if not c.ensemble_seeds:
            raise ValueError("bucilua2006model: ensemble_seeds is empty")
        ensemble = frozen(Ensemble(ctx.load_baselines(list(c.ensemble_seeds))).to(ctx.device))
        real = torch.cat([b.cpu() for b in ctx.calibration_batches(10 ** 5)])   # the whole training split
        source = real[:c.munge_source]
        gen = torch.Generator().manual_seed(ctx.seed)
        t0 = time.perf_counter()
        pseudo = munge(source, c.rounds, c.swap_prob, c.local_var, gen)
        ctx.ledger.add("munge", seconds=time.perf_counter() - t0, samples=len(pseudo))
        inputs = torch.cat([real, pseudo])

        def loss(s: ModelOutput, _y, t: ModelOutput | None) -> torch.Tensor:
            return kd_loss(s.logits, t.logits, None, 1.0, 0.0)   # KL(ensemble probabilities || student)

        student = ctx.build_student()
        epochs = max(1, math.ceil(ctx.epochs_scratch * len(real) / len(inputs)))
        report = distil(ctx, student, loss, teacher=ensemble, inputs=inputs, labels=None, epochs=epochs,
                        stage="mimic")
        out = compressed(student, report, note=f"student mimicking an ensemble of {len(c.ensemble_seeds)} baselines on "
                                               f"real plus MUNGE pseudo data",
                         real_images=len(real), pseudo_images=len(pseudo), ensemble_seeds=list(c.ensemble_seeds),
                         ensemble_params=sum(p.numel() for p in ensemble.parameters()),
                         ensemble_val_top1_pct=ctx.evaluate(ensemble))
        if c.ensemble_control:
            out.controls["ensemble"] = compressed(ensemble, None, note=f"the ensemble of {len(c.ensemble_seeds)} "
                                                                       "baselines the student mimics (its cost)")
        return out
