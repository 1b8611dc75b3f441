"""Faster gaze prediction with dense networks and Fisher pruning.

Theis, Korshunova, Tejani, Huszar (2018), arXiv:1801.05787. Key: theis2018faster.
Implements Fisher pruning (Sec. 2.1-2.2) while fine-tuning the trained baseline with distillation:
    pruning signal of feature map k (Eq. 8-9): with a_nkij its activation and g_nkij the gradient of
    example n's loss with respect to it,
        Delta_k = 1 / (2N) sum_n ( sum_ij a_nkij g_nkij )^2          (accumulated over the steps since
                                                                      the last removal)
    FLOP-aware selection (Eq. 10-11): remove the map minimising Delta_k - beta * dC_k, dC_k the
    multiply-adds its removal saves (its conv row plus the consumer's reads of it, at the current
    widths); each removal updates the widths, so the next map is chosen with the new costs.
    Training loss: the distillation the paper trains with, here cross-entropy plus the KL divergence
    to the unpruned network's softened outputs (T = 4, weight 0.5).
Maps are removed one at a time, every ``prune_every`` steps, until ``channel_ratio`` of the removable
channels are gone (at ``end_fraction`` of the fine-tuning steps); they are then removed for real.
Controls: ``ratio<pct>`` (a second level).
Real: channels removed for real (parameters, MACs, measured latency).  Simulated: nothing.
Deviations: Delta and dC are each divided by their mean over the live maps before they are combined
(the paper's beta is in its own units); when the fine-tuning run has fewer removal points than maps
to remove, several maps are removed at one point, still one at a time with the costs updated; the
signal is taken at the BatchNorm output of each conv-BN-ReLU chain (single consumer; no residual
networks); the teacher is the trained baseline, not DeepGaze II.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.flows import prune
from mcbench.methods.protocols import Compressed, MethodContext, ModelOutput, PruningMethod, StepInfo, TrainHooks
from mcbench.methods.pruning._masks import LayerMasks
from mcbench.methods.pruning._physical import Chain, find_chains, zero_bn_of_masked_channels
from mcbench.methods.registry import register


class FisherSignal:
    """Accumulates sum_n (sum_ij a g)^2 per channel at each chain's BN output (forward + tensor hooks)."""

    def __init__(self, model: nn.Module, chains: dict[str, Chain]) -> None:
        mods = dict(model.named_modules())
        self.acc = {n: torch.zeros(mods[c.bn].num_features, dtype=torch.float64) for n, c in chains.items()}
        self.n = 0
        self._handles = [mods[c.bn].register_forward_hook(self._hook(n)) for n, c in chains.items()]

    def _hook(self, name: str):
        def fwd(_m, _i, out):
            if not (torch.is_grad_enabled() and out.requires_grad):
                return
            a = out.detach()
            first = name == next(iter(self.acc))

            def grad_hook(g):
                per_example = (a * g).sum((2, 3)) * a.shape[0]       # the batch loss is a mean over examples
                self.acc[name] += (per_example.double() ** 2).sum(0).cpu()
                if first:
                    self.n += a.shape[0]
            out.register_hook(grad_hook)
        return fwd

    def delta(self) -> dict[str, torch.Tensor]:
        return {n: a / (2 * max(1, self.n)) for n, a in self.acc.items()}

    def reset(self) -> None:
        for a in self.acc.values():
            a.zero_()
        self.n = 0

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def map_sizes(model: nn.Module, chains: dict[str, Chain], example: torch.Tensor) -> dict[str, int]:
    """Output spatial size (H*W, 1 for Linear) of every producer and consumer."""
    mods = dict(model.named_modules())
    sizes: dict[str, int] = {}
    names = {x for c in chains.values() for x in (c.conv, c.consumer)}
    hs = [mods[n].register_forward_hook(lambda m, i, o, n=n: sizes.__setitem__(n, o[0, 0].numel() if o.dim() > 2 else 1))
          for n in names]
    with torch.no_grad():
        was = model.training
        model.eval()(example)
        model.train(was)
    for h in hs:
        h.remove()
    return sizes


def saved_macs(model: nn.Module, chains: dict[str, Chain], keep: dict[str, torch.Tensor], sizes: dict[str, int]
               ) -> dict[str, float]:
    """dC for one more channel of each producer, at the current widths: its conv row + the consumer's reads."""
    mods = dict(model.named_modules())
    feeds = {c.consumer: n for n, c in chains.items()}
    alive = {n: int(k.sum()) for n, k in keep.items()}
    out = {}
    for n, c in chains.items():
        conv, cons = mods[n], mods[c.consumer]
        c_in = alive.get(feeds.get(n, ""), conv.in_channels)
        row = c_in * conv.weight[0, 0].numel() * sizes[n]
        c_out = alive.get(c.consumer, cons.weight.shape[0])
        read = c_out * (cons.weight[0, 0].numel() if cons.weight.dim() > 2 else 1) * sizes[c.consumer]
        out[n] = float(row + read)
    return out


def pick_one(delta: dict[str, torch.Tensor], saved: dict[str, float], keep: dict[str, torch.Tensor], beta: float
             ) -> tuple[str, int] | None:
    """The live map minimising Delta_k / mean(Delta) - beta * dC_k / mean(dC) (a layer keeps one map)."""
    live = [(n, int(i)) for n, k in keep.items() if int(k.sum()) > 1 for i in k.nonzero().flatten()]
    if not live:
        return None
    d = torch.tensor([float(delta[n][i]) for n, i in live])
    c = torch.tensor([saved[n] for n, _ in live])
    score = d / d.mean().clamp_min(1e-30) - beta * c / c.mean().clamp_min(1e-30)
    return live[int(torch.argmin(score))]


def kd_loss(temperature: float = 4.0, weight: float = 0.5):
    def loss(student: ModelOutput, targets: torch.Tensor, teacher: ModelOutput | None) -> torch.Tensor:
        ce = F.cross_entropy(student.logits, targets)
        if teacher is None:
            return ce
        t = temperature
        kl = F.kl_div(F.log_softmax(student.logits / t, 1), F.softmax(teacher.logits / t, 1), reduction="batchmean")
        return (1 - weight) * ce + weight * t * t * kl
    return loss


def fisher_prune(ctx: MethodContext, model: nn.Module, ratio: float, beta: float, every: int, end_fraction: float
                 ) -> tuple[nn.Module, object, int]:
    model = model.to(ctx.device)
    teacher = copy.deepcopy(model).eval()
    example = ctx.example_input(1)
    chains = find_chains(model, example)
    sizes = map_sizes(model, chains, example)
    masks = LayerMasks(model, lambda w: w.abs(), structured=True, only=set(chains))
    keep = {n: torch.ones(model.get_submodule(n).out_channels, dtype=torch.bool) for n in chains}
    target = int(ratio * sum(k.numel() for k in keep.values()))
    signal = FisherSignal(model, chains)
    removed = 0

    def sync_masks() -> None:
        for n, k in keep.items():
            w = masks.layers[n].weight
            masks.masks[n] = k.to(w.device).view(-1, *([1] * (w.dim() - 1))).expand_as(w).clone()

    def enforce(m: nn.Module) -> None:
        masks.apply()
        zero_bn_of_masked_channels(m, chains)

    def before_step(m: nn.Module, info: StepInfo) -> None:
        masks.freeze_masked(info.optimizer)

    def after_step(m: nn.Module, step: int, total: int) -> None:
        nonlocal removed
        end = max(1, int(end_fraction * total))
        if step % every == 0 or step == end:
            due = target if step >= end else int(math.ceil(target * step / end))
            delta = signal.delta()
            while removed < due:
                choice = pick_one(delta, saved_macs(m, chains, keep, sizes), keep, beta)
                if choice is None:
                    break
                keep[choice[0]][choice[1]] = False
                removed += 1
            sync_masks()
            signal.reset()
        enforce(m)

    report = ctx.train_fn(model, epochs=ctx.epochs_finetune, teacher=teacher, loss=kd_loss(), stage="fisher",
                          hooks=TrainHooks(before_step=before_step, after_step=after_step,
                                           selectable=lambda s, t: s >= int(end_fraction * t)))
    signal.remove()
    enforce(model)
    return prune.remove_channels(model, example), report, removed


@register(family="pruning")
class theis2018faster(PruningMethod):
    structured = True

    @dataclass
    class Config:
        channel_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.5   # fraction of removable channels removed in all
        beta: Annotated[float, Field(ge=0)] = 0.3                   # FLOP trade-off (normalised units)
        prune_every: Annotated[int, Field(ge=1)] = 10               # steps between removals (paper: 10)
        end_fraction: Annotated[float, Field(gt=0, le=1)] = 0.75    # all maps removed by this fraction of the steps
        ratio_control: Annotated[float, Field(ge=0, lt=1)] = 0.7    # a second level (0: none)

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        return prune.at_levels(lambda r: self._run(ctx, r), "channel_ratio", c.channel_ratio, c.ratio_control)

    def _run(self, ctx: MethodContext, ratio: float) -> Compressed:
        c = self.config
        small, report, removed = fisher_prune(ctx, copy.deepcopy(ctx.load_baseline()), ratio, c.beta, c.prune_every,
                                              c.end_fraction)
        widths = [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)]
        return Compressed(small.eval(), real=True, train_report=report,
                          note=f"Fisher pruning with distillation: {removed} feature maps ({ratio:.0%}) removed one at "
                               "a time by Fisher signal and FLOP cost, then removed for real",
                          extra={"conv_out_channels": widths, "channels_removed": removed})
