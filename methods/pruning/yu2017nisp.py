"""NISP: Pruning Networks Using Neuron Importance Score Propagation.

Yu, Li, Chen, Lai, Morariu, Han, Gao, Lin, Davis (2017), arXiv:1711.05908 (CVPR 2018). Key: yu2017nisp.
Implements Sec. 3 on the trained baseline:
    1. the final response layer (FRL, the features the classifier reads) is scored by Inf-FS
       (Roffo et al. 2015) on calibration data: A_ij = a max(sd_i, sd_j) + (1 - a)(1 - |corr_ij|),
       S = (I - r A)^-1 - I with r = 0.9 / rho(A), score_i = sum_j S_ij;
    2. the scores are propagated backwards layer by layer, s_k = |W_{k+1}|^T s_{k+1} (Eq. 9, Prop. 2),
       a conv's input channel c collecting sum_o s_o sum_{kernel} |W_{o,c}|; average pooling, max
       pooling and ReLU pass a channel's score through unchanged, and a BatchNorm multiplies it by
       |gamma / sqrt(var + eps)| (its per-channel linear factor, the "|W|" of that layer);
    3. in every removable layer the lowest-scoring fraction of neurons (channels) is removed for
       real, and the network is fine-tuned.
Controls: ``ratio<pct>`` (a second pruning ratio, same recipe).
Real: channels removed for real (parameters, MACs, measured latency).  Simulated: nothing.
Deviations: the propagation runs along the single-consumer chains of the task networks
(conv-BN-ReLU-pool to the next conv or the classifier), not through residual sums; the Inf-FS
mixing weight a = 0.5 (the paper does not state its value); one uniform pruning ratio per layer
(the paper sets per-layer ratios); calibration batches instead of the training set for Inf-FS.
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
from mcbench.methods.pruning._physical import find_chains
from mcbench.methods.registry import register


def inf_fs(features: torch.Tensor, a: float = 0.5) -> torch.Tensor:
    """Inf-FS scores of the columns of ``features`` (N, d): higher = more important."""
    f = features.double()
    sd = f.std(0)
    corr = torch.nan_to_num(torch.corrcoef(f.T), nan=0.0)
    sd_n = sd / sd.max().clamp_min(1e-12)
    adj = a * torch.maximum(sd_n[:, None], sd_n[None, :]) + (1 - a) * (1 - corr.abs())
    rho = torch.linalg.eigvals(adj).abs().max().real
    r = 0.9 / float(rho)
    eye = torch.eye(adj.shape[0], dtype=adj.dtype)
    s = torch.linalg.inv(eye - r * adj) - eye
    return s.sum(1).float()


def propagate(layer: nn.Module, scores_out: torch.Tensor) -> torch.Tensor:
    """s_in = |W|^T s_out for a Conv2d (kernel summed) or Linear ``layer`` (Eq. 9)."""
    w = layer.weight.detach().abs()
    if w.dim() > 2:
        w = w.flatten(2).sum(2)
    return w.T @ scores_out.to(w.dtype)


def bn_factor(bn: nn.BatchNorm2d | None) -> torch.Tensor | float:
    if bn is None:
        return 1.0
    return (bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)).abs()


@torch.no_grad()
def frl_features(model: nn.Module, classifier: nn.Module, batches: list[torch.Tensor]) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    h = classifier.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().flatten(1).cpu()))
    device = next(model.parameters()).device
    try:
        model.eval()
        for xb in batches:
            model(xb.to(device))
    finally:
        h.remove()
    return torch.cat(seen)


def nisp_scores(model: nn.Module, example: torch.Tensor, batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Producer conv name -> importance of each output channel, propagated back from the FRL."""
    chains = find_chains(model, example)
    mods = dict(model.named_modules())
    by_consumer = {ch.consumer: name for name, ch in chains.items()}
    last = next(name for name, ch in chains.items() if ch.consumer not in chains)   # feeds the classifier
    classifier = mods[chains[last].consumer]
    s = inf_fs(frl_features(model, classifier, batches)).to(classifier.weight.device)  # FRL = classifier input
    out: dict[str, torch.Tensor] = {}
    consumer = chains[last].consumer
    while consumer in by_consumer:
        producer = by_consumer[consumer]
        out[producer] = s.clone()                               # score of the producer's output channels
        bn = mods[chains[producer].bn] if chains[producer].bn else None
        s = propagate(mods[producer], s * bn_factor(bn))        # to the producer's input channels
        consumer = producer
    return out


@torch.no_grad()
def nisp_prune(ctx: MethodContext, model: nn.Module, ratio: float) -> nn.Module:
    model = model.to(ctx.device).eval()
    scores = nisp_scores(model, ctx.example_input(1), ctx.calibration_batches())
    return prune.remove_lowest_channels(ctx, model, scores, ratio)


@register(family="pruning")
class yu2017nisp(PruningMethod):
    structured = True

    @dataclass
    class Config:
        channel_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.5   # fraction of channels removed per layer
        ratio_control: Annotated[float, Field(ge=0, lt=1)] = 0.7   # a second level (0: none)

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        return prune.at_levels(lambda r: self._finish(ctx, nisp_prune(ctx, copy.deepcopy(ctx.load_baseline()), r), r),
                               "channel_ratio", c.channel_ratio, c.ratio_control)

    def _finish(self, ctx: MethodContext, small: nn.Module, ratio: float) -> Compressed:
        small = small.to(ctx.device)
        report = ctx.train_fn(small, epochs=ctx.epochs_finetune, stage="finetune")
        widths = [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)]
        return Compressed(small.eval(), real=True, train_report=report,
                          note=f"NISP: {ratio:.0%} of each conv's channels with the lowest propagated importance "
                               "removed for real, fine-tuned", extra={"conv_out_channels": widths})
