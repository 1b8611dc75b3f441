"""Shared pieces of unstructured (weight-level) pruning papers.

``train_masked``       train with fixed masks: masked weights get no gradient, no optimiser state and
                       stay exactly 0 (``LayerMasks.freeze_masked`` before each step, ``apply`` after)
``magnitude_masks``    per-layer magnitude masks nested inside the previous masks
``sparse_encoded``     the deployable file: nonzeros as float32 + relative indices (Huffman coded),
                       ``methods/encoding/container.py``'s ``SparseFloat``; the harness measures and decodes it
``sparse_compressed``  a ``Compressed`` saying the truth: real storage, no dense speedup
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from mcbench.methods.encoding import container
from mcbench.methods.ops import nonzero_macs, tally
from mcbench.methods.protocols import Compressed, EncodedModel, MethodContext, StepInfo, TrainHooks, TrainReport
from mcbench.methods.pruning._masks import PRUNABLE, LayerMasks

INDEX_BITS = {"conv": 8, "fc": 5}   # relative index widths (Deep Compression, Sec. 2)


def prunable_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, PRUNABLE)]


def fixed_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> LayerMasks:
    lm = LayerMasks(model, lambda w: w.abs(), only=set(masks))
    lm.masks = {n: m.to(lm.layers[n].weight.device) for n, m in masks.items()}
    return lm


def train_masked(ctx: MethodContext, model: nn.Module, masks: dict[str, torch.Tensor], *, epochs: int,
                 stage: str = "train", hooks: TrainHooks | None = None) -> TrainReport:
    """Train ``model`` in place with ``masks`` held fixed (pruned weights exactly 0 throughout)."""
    lm = fixed_masks(model, masks)
    lm.apply()
    extra = hooks or TrainHooks()

    def before_step(m: nn.Module, info: StepInfo) -> None:
        if extra.before_step:
            extra.before_step(m, info)
        lm.freeze_masked(info.optimizer)

    def after_step(m: nn.Module, step: int, total: int) -> None:
        lm.apply()
        if extra.after_step:
            extra.after_step(m, step, total)

    report = ctx.train_fn(model, epochs=epochs, stage=stage,
                          hooks=TrainHooks(before_step=before_step, after_step=after_step,
                                           after_step_info=extra.after_step_info, selectable=extra.selectable))
    lm.apply()
    return report


@torch.no_grad()
def magnitude_masks(model: nn.Module, rates: dict[str, float], previous: dict[str, torch.Tensor] | None = None
                    ) -> dict[str, torch.Tensor]:
    """Drop the fraction ``rates[name]`` of the weights still alive in each layer, smallest |w| first.

    The new mask is a subset of ``previous`` (pruned weights never come back)."""
    mods = dict(model.named_modules())
    out = {}
    for name, rate in rates.items():
        w = mods[name].weight.detach()
        alive = previous[name].to(w.device) if previous else torch.ones_like(w, dtype=torch.bool)
        n_drop = int(round(rate * int(alive.sum())))
        score = torch.where(alive, w.abs(), torch.full_like(w, -1.0)).flatten()
        keep = alive.flatten().clone()
        if n_drop > 0:
            order = torch.argsort(score)
            first_alive = int((~alive).sum())
            keep[order[first_alive:first_alive + n_drop]] = False
        out[name] = keep.view_as(w)
    return out


def density(masks: dict[str, torch.Tensor]) -> float:
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / max(1, total)


def _mean_pruned(masks: dict[str, torch.Tensor]) -> float:
    """Mean zero fraction over the layers that were pruned at all (more than 1% zeros)."""
    fr = [1.0 - float(m.float().mean()) for m in masks.values()]
    fr = [f for f in fr if f > 0.01]
    return sum(fr) / len(fr) if fr else 0.0


def sparse_plan(model: nn.Module, names: list[str]) -> dict[str, container.Codec]:
    return {f"{n}.weight": container.SparseFloat(
        INDEX_BITS["conv" if isinstance(model.get_submodule(n), nn.Conv2d) else "fc"]) for n in names}


def sparse_encoded(names: list[str], build: Callable[[], nn.Module]) -> EncodedModel:
    return EncodedModel(encode=lambda m: container.encode_model(m.cpu(), sparse_plan(m, names)),
                        decode=lambda b: container.decode_model(b, build),
                        format="sparse float32 nonzeros + Huffman-coded relative indices (fc 5, conv 8 bits)")


def sparse_compressed(model: nn.Module, masks: dict[str, torch.Tensor], build: Callable[[], nn.Module], *,
                      note: str, report: TrainReport | None = None, extra: dict | None = None) -> Compressed:
    """The masked model as a deployable sparse file: storage real, compute dense (no dense speedup)."""
    model = model.cpu().eval()
    names = list(masks)
    data = container.encode_model(model, sparse_plan(model, names))
    d = density(masks)
    return Compressed(
        model, real=False, storage_real=True, compute_real=False, encoded=sparse_encoded(names, build),
        count_ops=lambda m, x: tally(m, x, nonzero_macs), train_report=report,
        note=note + "; storage real (sparse file measured and decoded), no dense speedup (dense float kernels)",
        bits_per_weight=8.0 * sum(container.payload_sizes(data)[f"{n}.weight"] for n in names)
        / max(1, sum(m.numel() for m in masks.values())),
        extra={"sparsity_mean_per_pruned_layer": _mean_pruned(masks),
               "weights_remaining_fraction": d, "size_bytes_sparse_file": len(data), **(extra or {})})
