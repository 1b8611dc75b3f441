"""Recovering from Random Pruning: On the Plasticity of Deep Convolutional Neural Networks.

Mittal, Bhardwaj, Khapra, Ravindran (2018), WACV 2018, arXiv:1801.10447. Key: mittal2018recovering.
Implements the paper's experiment (Sections 3-4): filters are removed from every convolutional layer
uniformly at random, the same fraction per layer, and the network is fine-tuned; the same is done with
a criterion-based ranking (the L1 norm of each filter, the criterion of Li et al. 2017, one of those the
paper compares against) at the same per-layer ratio and under the same fine-tuning recipe. The paper's
claim is that the random network recovers as well as the criterion-ranked one.
    row        random filter selection (per layer, seeded by the run's seed), then fine-tuning
    control    ``l1``: lowest-L1-norm filters removed instead, same ratio, same fine-tuning recipe
Real: channels are removed for real (conv rows, BN entries and the consumer's input columns; see
``methods/pruning/_surgery.py``, Torch-Pruning), so parameters, MACs and latency drop.
Simulated: nothing.
Deviations: one-shot removal of all layers followed by fine-tuning for the harness's fine-tuning epochs
(the paper's fine-tuning schedule on ImageNet is not reproduced); only channels whose removal is exact
without a dependency graph are pruned (the task CNN's convolutions; not residual branches); the other
criteria of the paper (mean activation, entropy, APoZ, ...) are not run. A second level (``ratio_control``,
70% of filters, random criterion) is a control row.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import Field

from mcbench.methods.flows import prune
from mcbench.methods.protocols import Compressed, MethodContext, PruningMethod
from mcbench.methods.pruning._layerview import Criterion, LayerView
from mcbench.methods.registry import register


def random_criterion(seed: int) -> Criterion:
    """One uniform random score per output channel; the same (seed, layer name) gives the same scores."""
    def scores(view: LayerView) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(view.name.encode()))
        return torch.rand(view.weight.shape[0], generator=gen).to(view.weight.device)
    return scores


def l1_filter_norm(view: LayerView) -> torch.Tensor:
    """Li et al. (2017): the L1 norm of each filter, sum |W[c]|."""
    return view.weight.detach().abs().reshape(view.weight.shape[0], -1).sum(1)


@register(family="pruning")
class mittal2018recovering(PruningMethod):
    structured = True

    @dataclass
    class Config:
        channel_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.5   # fraction of filters removed from every conv
        l1_control: bool = True                                     # also train the L1-norm control
        ratio_control: Annotated[float, Field(ge=0, lt=1)] = 0.7   # a second level, random filters (0: none)

    def _prune_and_finetune(self, ctx: MethodContext, criterion: Criterion, label: str,
                            ratio: float | None = None) -> Compressed:
        ratio = self.config.channel_ratio if ratio is None else ratio
        model = prune.prune_channels_once(ctx, ctx.load_baseline(), criterion, ratio)
        model = model.to(ctx.device)
        report = ctx.train_fn(model, epochs=ctx.epochs_finetune)
        widths = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        return Compressed(model.eval(), real=True, train_report=report,
                          note=f"{label} filter pruning: {ratio:.0%} of each conv's filters "
                               "removed for real, then fine-tuned",
                          extra={"criterion": label, "conv_out_channels": widths})

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        out = prune.at_level(self._prune_and_finetune(ctx, random_criterion(ctx.seed), "random"),
                             "channel_ratio", c.channel_ratio)
        if c.ratio_control:
            out.controls[prune.level_kind("channel_ratio", c.ratio_control)] = prune.at_level(
                self._prune_and_finetune(ctx, random_criterion(ctx.seed), "random", c.ratio_control),
                "channel_ratio", c.ratio_control)
        if c.l1_control:
            out.controls["l1"] = self._prune_and_finetune(ctx, l1_filter_norm, "L1-norm")
        return out
