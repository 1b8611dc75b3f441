"""Deep Neural Network Compression With Single and Multiple Level Quantization (SLQ, MLQ).

Xu, Wang, Zhou, Lin, Xiong (2018), AAAI 2018, arXiv:1803.03289. Key: xu2018deep.
Implements incremental quantization with a distribution-aware (width-level) partition and, for MLQ, a
layer-by-layer (depth-level) schedule:
    levels (the incremental-quantization set the paper builds on): per layer s = max|W|,
        n1 = floor(log2(4s/3)), n2 = n1 + 1 - 2^(b-2), P = {0} u {+-2^n : n2 <= n <= n1} (b = 2: ternary {0, +-2^n1});
    width level (SLQ): the layer's not-yet-quantized weights are clustered (k-means, ``clusters`` centres);
        each centre is quantized to its nearest level, a cluster's quantization loss is
        sum_{w in cluster} (w - q(c))^2; the clusters of lowest loss are quantized first (their weights all take
        q(c), weight sharing) until the step's portion of the layer is quantized; the remaining float weights
        are re-trained to compensate; the portions grow (``portions``) until every weight is quantized (the
        last step quantizes each remaining weight to its nearest level); then the batch-norm statistics are
        re-estimated on training batches (``bn_batches``; not in the paper, see Deviations);
    depth level (MLQ, ``mode: mlq``, ternary by default): incremental layer compensation: the layers are
        quantized a group at a time, first to last (``layer_groups``), each group by the width-level steps
        above, the later layers staying float and re-trained with the group's remaining weights.
Quantized weights are frozen: after every optimiser step they are restored to their levels.
Real: storage. The encoded file stores each layer's level indices bit-packed at ``bits`` bits (a codebook of
the layer's 2^(b-1) + 1 levels, at most 2^b); biases and BN float32. Simulated: compute (the powers of two on
float kernels; no shift kernels).
Deviations: the paper's full text was not available offline; the level set is the incremental network
quantization set its authors use (Zhou et al. 2017, a co-author), the cluster count per layer is ours, and
the partition counts weights (not clusters) to reach each portion; one harness fine-tuning run (AdamW,
cosine schedule) per partition step. After the last step the BN running statistics are re-estimated on
``bn_batches`` training batches (no gradient, weights untouched): on the task CNN the final rounding left them
stale (the trained baseline rounded to 4-bit levels: val top-1 81.7 -> 74.2 %; with BN re-estimated on 40
batches, 81.0 %). The last step's weights are quantized with no re-training after it (as
the incremental scheme ends), so the row's validation score is measured after it, on the scored model.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from mcbench.methods.encoding import container
from mcbench.methods.flows import quantize
from mcbench.methods.protocols import Compressed, EncodedModel, MethodContext, QuantizationMethod, TrainHooks
from mcbench.methods.quantization import _uniform as U
from mcbench.methods.registry import register


def levels(w: torch.Tensor, bits: int) -> torch.Tensor:
    """The sorted level set P of a layer with weights ``w`` at ``bits`` bits (ternary at 2 bits)."""
    s = float(w.detach().abs().max())
    n1 = math.floor(math.log2(4 * s / 3)) if s > 0 else 0
    n2 = n1 + 1 - 2 ** (bits - 2)
    mags = 2.0 ** torch.arange(n2, n1 + 1, dtype=torch.float64)
    return torch.cat([-mags, torch.zeros(1, dtype=torch.float64), mags]).sort().values.to(w.dtype).to(w.device)


def nearest(w: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    return book[(w.unsqueeze(-1) - book).abs().argmin(dim=-1)]


def kmeans_1d(x: torch.Tensor, k: int, iters: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd on scalars from quantile seeds: (centres, labels)."""
    x = x.detach().double()
    k = max(1, min(k, len(torch.unique(x))))
    c = torch.quantile(x, torch.linspace(0, 1, k + 2, dtype=x.dtype, device=x.device)[1:-1])
    labels = (x[:, None] - c[None]).abs().argmin(1)
    for _ in range(iters):
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        counts = torch.zeros_like(c).index_add_(0, labels, torch.ones_like(x))
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)
        new = (x[:, None] - c[None]).abs().argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
    return c, labels


@torch.no_grad()
def partition_step(w: torch.Tensor, frozen: torch.Tensor, book: torch.Tensor, portion: float,
                   clusters: int) -> torch.Tensor:
    """One width-level step: quantize the lowest-loss clusters of the free weights until ``portion`` of the
    layer is frozen; returns the new frozen mask (``w`` is written in place). ``portion`` 1: all of it."""
    free = ~frozen
    if portion >= 1.0:
        w[free] = nearest(w[free], book)
        return torch.ones_like(frozen)
    need = int(round(portion * w.numel())) - int(frozen.sum())
    if need <= 0 or not free.any():
        return frozen
    idx = free.flatten().nonzero().squeeze(1)
    values = w.flatten()[idx]
    centres, labels = kmeans_1d(values, clusters)
    q = nearest(centres.to(w.dtype), book)
    loss = torch.zeros_like(centres).index_add_(0, labels, (values.double() - q.double()[labels]) ** 2)
    flat_w, flat_f = w.view(-1), frozen.clone().view(-1)
    taken = 0
    for j in torch.argsort(loss).tolist():      # the clusters of lowest quantization loss first
        members = idx[labels == j]
        if len(members) == 0:
            continue
        flat_w[members] = q[j]
        flat_f[members] = True
        taken += len(members)
        if taken >= need:
            break
    return flat_f.view_as(frozen)


def layer_groups(n_layers: int, groups: int) -> list[list[int]]:
    groups = max(1, min(groups, n_layers))
    bounds = [round(n_layers * (g + 1) / groups) for g in range(groups)]
    return [list(range(0 if g == 0 else bounds[g - 1], bounds[g])) for g in range(groups)]


class Frozen:
    """After-step hook: quantized weights are put back on their levels (no update reaches them)."""

    def __init__(self) -> None:
        self.masks: dict[nn.Module, torch.Tensor] = {}
        self.values: dict[nn.Module, torch.Tensor] = {}

    @torch.no_grad()
    def set(self, layer: nn.Module, mask: torch.Tensor) -> None:
        self.masks[layer], self.values[layer] = mask.clone(), layer.weight.detach().clone()

    @torch.no_grad()
    def __call__(self, model: nn.Module, step: int, total: int) -> None:
        for layer, mask in self.masks.items():
            layer.weight[mask] = self.values[layer][mask]


@register(family="quantization")
class xu2018deep(QuantizationMethod):
    from_scratch = False

    @dataclass
    class Config:
        mode: Literal["slq", "mlq"] = "slq"
        bits: Annotated[int, Field(ge=2, le=8)] = 4              # 2: ternary (MLQ's setting)
        clusters: Annotated[int, Field(ge=2, le=256)] = 8        # k-means centres per layer and step
        portions: tuple[float, ...] = (0.5, 0.75, 1.0)           # accumulated quantized fraction per step
        layer_groups: Annotated[int, Field(ge=1, le=16)] = 2     # MLQ: depth-level groups, first to last
        bn_batches: Annotated[int, Field(ge=0, le=500)] = 40     # training batches to re-estimate BN on after the
                                                                 # last step (0: keep the last re-training's statistics)

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        if not c.portions or c.portions[-1] != 1.0 or any(b <= a for a, b in zip(c.portions, c.portions[1:])):
            raise ValueError(f"xu2018deep: portions must increase and end at 1.0, got {list(c.portions)}")
        model = copy.deepcopy(ctx.load_baseline()).to(ctx.device)
        layers = [m for _, m in U.quant_layers(model)]
        books = {m: levels(m.weight, c.bits) for m in layers}
        frozen = Frozen()
        masks = {m: torch.zeros_like(m.weight, dtype=torch.bool) for m in layers}
        groups = layer_groups(len(layers), c.layer_groups) if c.mode == "mlq" else [list(range(len(layers)))]
        report, runs = None, 0
        for g, group in enumerate(groups):
            for p, portion in enumerate(c.portions):
                for i in group:
                    m = layers[i]
                    masks[m] = partition_step(m.weight.data, masks[m], books[m], portion, c.clusters)
                    frozen.set(m, masks[m])
                last = g == len(groups) - 1 and p == len(c.portions) - 1
                if not last:                                       # the remaining float weights compensate
                    report = ctx.train_fn(model, epochs=max(1, ctx.epochs_finetune),
                                          hooks=TrainHooks(after_step=frozen), stage=f"{c.mode}-{g + 1}.{p + 1}")
                    runs += 1
        if c.bn_batches:         # the last step moved weights after the last re-training: its BN statistics are stale
            quantize.reestimate_bn(model, ctx.calibration_batches(c.bn_batches), ctx.device)
        if report is not None:   # the row's validation score is the fully quantized model's, not the last re-training's
            report = dataclasses.replace(report, val_top1_acc_pct=ctx.evaluate(model.eval()))
        return self._compressed(model.eval(), ctx, report, runs)

    def _compressed(self, model: nn.Module, ctx: MethodContext, report, runs: int) -> Compressed:
        c = self.config
        plan = lambda m: {f"{n}.weight": container.Codebook(c.bits) for n, _ in U.quant_layers(m)}  # noqa: E731
        encoded = EncodedModel(encode=lambda m: container.encode_model(m, plan(m)),
                               decode=lambda b: container.decode_model(b, ctx.build_baseline),
                               format=f"{c.bits}-bit packed indices into each layer's power-of-two levels; "
                                      "biases and BN float32")
        name = "SLQ" if c.mode == "slq" else "MLQ"
        return Compressed(model, real=False, storage_real=True, compute_real=False, train_report=report,
                          encoded=encoded, bits_per_weight=float(c.bits),
                          note=f"{name} at {c.bits} bits (levels 0 and +-powers of two per layer): storage real "
                               "(bit-packed indices in the encoded file); compute simulated (float kernels)",
                          extra={"mode": c.mode, "levels_per_layer": 2 ** (c.bits - 1) + 1, "retraining_runs": runs,
                                 "activation_bits": 32})
