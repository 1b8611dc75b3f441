"""The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks.

Frankle, Carbin (2018), arXiv:1803.03635 (ICLR 2019). Key: frankle2018lottery.
Implements iterative magnitude pruning with rewinding to the original initialisation (Sec. 1,
"Identifying winning tickets", steps 1-4, iterated as in Sec. 2):
    1. initialise f(x; theta_0)              the harness's baseline for this seed starts from theta_0
    2. train for j iterations -> theta_j     round 0 is the trained baseline itself (same theta_0)
    3. prune p% of the surviving weights of every layer by |theta_j| (output layer at p/2, Sec. 2 and
       Appendix: "connections to output are pruned at half the rate"), giving mask m
    4. reset the surviving weights to theta_0 (every parameter and BN buffer rewound), train f(x; m * theta_0)
       with m held fixed; repeat 3-4 for ``rounds`` rounds, so the density after round r is (1 - p)^r.
Controls (rows ``frankle2018lottery:<name>``, same recipe):
    ``random-reinit``  the final mask on a fresh random initialisation (Sec. 2, "random reinitialization")
    ``round<r>``       the ticket of an earlier round (a second compression level on the same curve)
Real: storage. The deployable file holds the float32 nonzeros and Huffman-coded relative indices
(``SparseFloat`` in ``methods/encoding/container.py``); the harness measures and decodes it.
Simulated: compute. Dense float kernels (no dense speedup); ops_json counts the nonzero-weight MACs.
Deviations: each round trains for the harness's ``epochs_scratch`` with its AdamW + cosine recipe and
selects the epoch on validation (the paper trains a fixed number of iterations with Adam or SGD and
reports early-stopping iterations); a default prune rate of 55% per round over 2 rounds (about 20%
of the weights left, the size of the abstract's claim) instead of 20% over many rounds, to keep the
leaderboard cost at three trainings; biases and BN parameters are not pruned (they are rewound).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from mcbench.methods.flows import prune
from mcbench.methods.protocols import Compressed, MethodContext, PruningMethod
from mcbench.methods.pruning._unstructured import (magnitude_masks, prunable_layers, sparse_compressed,
                                                   train_masked)
from mcbench.methods.registry import register


def layer_rates(names: list[str], rate: float, output_factor: float) -> dict[str, float]:
    """Per-layer prune rate per round: ``rate`` for every layer, ``rate * output_factor`` for the output layer."""
    out = {n: rate for n in names}
    out[names[-1]] = rate * output_factor
    return out


@torch.no_grad()
def rewind(model: nn.Module, init_state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> None:
    """Step 4: every parameter and buffer back to ``init_state`` (theta_0), pruned weights set to 0."""
    model.load_state_dict(init_state)   # copies into the existing tensors (their device kept)
    mods = dict(model.named_modules())
    for name, m in masks.items():
        mods[name].weight.mul_(m.to(mods[name].weight.device))


def fresh_init(ctx: MethodContext, salt: int) -> dict[str, torch.Tensor]:
    """A new random initialisation from the same distribution (another seed; global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed * 7919 + salt)
        return ctx.build_baseline().state_dict()


@register(family="pruning")
class frankle2018lottery(PruningMethod):
    structured = False

    @dataclass
    class Config:
        prune_rate: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.55      # p: fraction of surviving weights pruned per round
        rounds: Annotated[int, Field(ge=1, le=20)] = 2                  # pruning rounds (each retrains from theta_0)
        output_rate_factor: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5   # output layer pruned at p * factor
        random_reinit_control: bool = True                              # Sec. 2 control
        round_controls: bool = True                                     # earlier rounds as control rows

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        theta0 = ctx.baseline_init_state()
        model = ctx.load_baseline().to(ctx.device)             # round 0: theta_0 trained
        names = prunable_layers(model)
        rates = layer_rates(names, c.prune_rate, c.output_rate_factor)
        masks, tickets = None, []
        for r in range(1, c.rounds + 1):
            masks = magnitude_masks(model, rates, masks)
            rewind(model, theta0, masks)
            report = train_masked(ctx, model, masks, epochs=ctx.epochs_scratch, stage=f"round{r}")
            tickets.append(prune.at_level(self._out(ctx, model, masks, report,
                                                    f"winning ticket after round {r} of {c.rounds}"), "rounds", r))
            model = model.to(ctx.device)
        out = tickets[-1]
        if c.round_controls:
            for r, t in enumerate(tickets[:-1], start=1):
                out.controls[f"round{r}"] = t
        if c.random_reinit_control:
            control = ctx.build_baseline().to(ctx.device)
            rewind(control, fresh_init(ctx, salt=1), masks)
            report = train_masked(ctx, control, masks, epochs=ctx.epochs_scratch, stage="random-reinit")
            out.controls["random-reinit"] = self._out(ctx, control, masks, report,
                                                      "final mask, random re-initialisation (control)")
        return out

    def _out(self, ctx: MethodContext, model: nn.Module, masks: dict[str, torch.Tensor], report, what: str
             ) -> Compressed:
        import copy

        snapshot = copy.deepcopy(model).cpu().eval()
        return sparse_compressed(snapshot, {n: m.cpu() for n, m in masks.items()}, ctx.build_baseline,
                                 note=f"lottery ticket: {what}", report=report)
