"""ThiNet: A Filter Level Pruning Method for Deep Neural Network Compression.

Luo, Wu, Lin (2017), arXiv:1707.06342 (ICCV 2017). Key: luo2017thinet.
Implements Sec. 3.2-3.3 (Algorithm 1, Eq. 5-6): the filters of layer i are chosen from the input
channels of layer i+1 (its consumer). m training examples (x_hat, y_hat) are sampled, each one
output element of layer i+1 (random image, output channel and position): y_hat = sum_c x_hat_c,
x_hat_c = sum_k W_{o,c,k} x_{c,k} the contribution of input channel c. Greedy selection builds the
removal set T one channel at a time,
    T <- T + argmin_c  sum_samples ( sum_{j in T + {c}} x_hat_j )^2                         (Eq. 5)
until |T| = (1 - keep) C; the kept channels S get least-squares scales (Eq. 6)
    w_hat = argmin_w  sum_samples ( y_hat - w^T x_hat_S )^2
multiplied into the consumer's input weights. Layers are pruned in order, each sampled from the
already-pruned network; the filters in T are removed for real; then the network is fine-tuned.
Controls: ``random`` (the same channel count chosen at random, no scaling, same fine-tuning): the
selection's value in the row it was designed to beat.
Real: channels removed for real (parameters, MACs, measured latency).  Simulated: nothing.
Deviations: one fine-tuning run after all layers (the paper fine-tunes one or two epochs after each
layer); a uniform ratio for every removable conv (chains with one consumer; no residual networks);
10 sampled positions per calibration image instead of 10 per image over a 100,000-image set.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from mcbench.methods.flows import prune
from mcbench.methods.protocols import Compressed, MethodContext, PruningMethod
from mcbench.methods.pruning._layerview import layer_views
from mcbench.methods.pruning._physical import find_chains
from mcbench.methods.pruning.he2017channel import flat_weight, patches, sample_positions
from mcbench.methods.pruning.mittal2018recovering import random_criterion
from mcbench.methods.registry import register


def contributions(x: torch.Tensor, w: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """x_hat (N, c): per-channel contributions to one random output channel per sample.
    ``x`` (N, c, k) patches of the consumer's input, ``w`` (n, c, k) its weights."""
    o = torch.randint(w.shape[0], (x.shape[0],), generator=gen)
    return torch.einsum("nck,nck->nc", x.double(), w[o].double())


def greedy_removal(xh: torch.Tensor, n_remove: int) -> list[int]:
    """Algorithm 1: the removal set T grown greedily by the smallest squared sum of contributions."""
    removed: list[int] = []
    running = torch.zeros(xh.shape[0], dtype=xh.dtype)
    left = list(range(xh.shape[1]))
    for _ in range(n_remove):
        errs = ((running.unsqueeze(1) + xh[:, left]) ** 2).sum(0)
        best = left[int(torch.argmin(errs))]
        removed.append(best)
        running += xh[:, best]
        left.remove(best)
    return sorted(removed)


def removal_error(xh: torch.Tensor, removed: list[int]) -> float:
    """The objective of Eq. 5: sum over samples of (sum_{j in T} x_hat_j)^2."""
    return float((xh[:, removed].sum(1) ** 2).sum())


def ls_scales(xh: torch.Tensor, kept: list[int]) -> torch.Tensor:
    """Eq. 6: w_hat = argmin ||y_hat - X_S w||^2, y_hat = sum over all channels."""
    y = xh.sum(1, keepdim=True)
    return torch.linalg.lstsq(xh[:, kept], y, driver="gelsd").solution.flatten()


@torch.no_grad()
def thinet_prune(ctx: MethodContext, model: nn.Module, ratio: float, per_image: int = 10) -> nn.Module:
    """Remove ``ratio`` of the channels of every removable conv, layer by layer; a physically smaller copy."""
    model = model.to(ctx.device).eval()
    example = ctx.example_input(1)
    chains = find_chains(model, example)
    batches = ctx.calibration_batches()
    gen = torch.Generator().manual_seed(ctx.seed)
    mods = dict(model.named_modules())
    for name, chain in chains.items():
        consumer = mods[chain.consumer]
        v = layer_views(model, example, names=[chain.consumer], batches=batches, activations=True)[chain.consumer]
        x = patches(v.inputs.cpu(), consumer, sample_positions(v.inputs.cpu(), consumer, per_image, gen))
        w = flat_weight(consumer).cpu()
        xh = contributions(x, w, gen)
        c = xh.shape[1]
        removed = greedy_removal(xh, int(ratio * c))
        kept = [i for i in range(c) if i not in removed]
        scale = ls_scales(xh, kept).to(consumer.weight.dtype).to(consumer.weight.device)
        idx = torch.tensor(kept, device=consumer.weight.device)
        shape = (1, -1) + (1,) * (consumer.weight.dim() - 2)
        consumer.weight[:, idx] *= scale.view(shape)
        prune.mask_channels_except(model, name, idx, chains)
    return prune.remove_channels(model, example)


@register(family="pruning")
class luo2017thinet(PruningMethod):
    structured = True

    @dataclass
    class Config:
        channel_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.5   # fraction of filters removed per conv (1 - r)
        positions_per_image: Annotated[int, Field(ge=1)] = 10      # sampled output positions per image
        random_control: bool = True
        ratio_control: Annotated[float, Field(ge=0, lt=1)] = 0.7   # a second level (0: none)

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        out = prune.at_level(self._finish(ctx, thinet_prune(ctx, copy.deepcopy(ctx.load_baseline()), c.channel_ratio,
                                                          c.positions_per_image),
                                          f"ThiNet greedy selection, {c.channel_ratio:.0%}"),
                             "channel_ratio", c.channel_ratio)
        if c.random_control:
            small = prune.prune_channels_once(ctx, copy.deepcopy(ctx.load_baseline()), random_criterion(ctx.seed),
                                              c.channel_ratio)
            out.controls["random"] = self._finish(ctx, small, f"random selection (control), {c.channel_ratio:.0%}")
        if c.ratio_control:
            small = thinet_prune(ctx, copy.deepcopy(ctx.load_baseline()), c.ratio_control, c.positions_per_image)
            out.controls[prune.level_kind("channel_ratio", c.ratio_control)] = prune.at_level(self._finish(
                ctx, small, f"ThiNet greedy selection, {c.ratio_control:.0%} (second level)"),
                "channel_ratio", c.ratio_control)
        return out

    def _finish(self, ctx: MethodContext, small: nn.Module, what: str) -> Compressed:
        small = small.to(ctx.device)
        report = ctx.train_fn(small, epochs=ctx.epochs_finetune, stage="finetune")
        widths = [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)]
        return Compressed(small.eval(), real=True, train_report=report,
                          note=f"{what} of each conv's filters removed for real, least-squares scaled, fine-tuned",
                          extra={"conv_out_channels": widths})
