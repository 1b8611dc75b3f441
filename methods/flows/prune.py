"""Pruning flows as small functions a paper composes.

=============================  ===============================================================
``prune_while_finetuning``     gradual pruning inside the harness's fine-tuning loop: masks
                               follow a schedule, masked weights get no optimiser update
``prune_channels_once``        one-shot structured selection by a criterion, channels removed
``mask_channels``              zero the given output channels (conv row, bias, BN gamma/beta)
``remove_channels``            a copy with exactly-dead channels removed for real, across residual
                               sums, concatenations and grouped convs (Torch-Pruning, ``_surgery.py``)
``channel_groups``             coupled output channels of any traceable network (``_surgery.py``)
``mask_groups`` / ``prune_groups``  zero chosen channels of groups / remove them for real; same function
``masks_from_scores``          scores -> keep-masks, per layer or global (``_masks.py``)
``remove_lowest_channels``     per-channel scores -> the lowest fraction of each scored group removed
                               for real (Torch-Pruning); NISP and SCOP select this way
``layer_views``                what a criterion sees of a layer (``_layerview.py``)
``gradual_pruning``            the default flow of ``PruningMethod.apply``
``at_level(s)``/``level_kind``  label results with the compression level they were made at
=============================  ===============================================================

Compression levels (accuracy-vs-compression curves): every pruning method returns its own row at
one level and at least one control row at another level of the same knob. Each of those results
is labelled with ``at_level(out, knob, value)``: its row's ``extra_json`` then holds
``level_knob`` (e.g. ``"channel_ratio"``, ``"sparsity"``, ``"rho"``) and ``level_value``. A method's
curve is its own row plus the control rows (``control_of`` = its run id) carrying the same
``level_knob``; controls that are not levels (``l1``, ``random-reinit``) carry no ``level_knob``.
Level controls are named ``level_kind(knob, value)`` (``ratio70``, ``sparsity90``).

Example (a paper that removes channels once and then fine-tunes, with a control)::

    def apply(self, ctx):
        model = prune.prune_channels_once(ctx, ctx.load_baseline(), self.criterion, ratio=0.5)
        report = ctx.train_fn(model, epochs=ctx.epochs_finetune)
        return Compressed(model.eval(), real=True, note="channels removed", train_report=report)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from mcbench.methods.protocols import Compressed, MethodContext, StepInfo, TrainHooks, TrainReport
from mcbench.methods.pruning._layerview import Criterion, LayerView, layer_views
from mcbench.methods.pruning._masks import LayerMasks, masks_from_scores
from mcbench.methods.pruning._masks import channel_scores
from mcbench.methods.pruning._physical import Chain, find_chains, zero_bn_of_masked_channels
from mcbench.methods.pruning._surgery import ChannelGroup, channel_groups, remove_dead_channels, symmetric_keep
from mcbench.methods.pruning._surgery import mask_channels as mask_groups
from mcbench.methods.pruning._surgery import prune_channels as prune_groups

__all__ = ["Schedule", "PruneRun", "prune_while_finetuning", "prune_channels_once", "mask_channels", "mask_channels_except",
           "remove_channels", "masks_from_scores", "layer_views", "LayerView", "gradual_pruning",
           "ChannelGroup", "channel_groups", "mask_groups", "prune_groups", "symmetric_keep", "at_level", "at_levels", "level_kind", "remove_lowest_channels"]

LEVEL_PREFIX = {"channel_ratio": "ratio", "sparsity": "sparsity"}


def at_level(out: Compressed, knob: str, value: float) -> Compressed:
    """Label ``out`` (in place, returned) with the level it was made at: ``extra`` gets ``level_knob``
    and ``level_value``, so its row joins the method's accuracy-vs-compression curve."""
    out.extra.update(level_knob=knob, level_value=float(value))
    return out


def at_levels(run: Callable[[float], Compressed], knob: str, value: float, second: float) -> Compressed:
    """``run(value)`` labelled at its level, with ``run(second)`` as its level control (none when ``second`` is 0)."""
    out = at_level(run(value), knob, value)
    if second:
        out.controls[level_kind(knob, second)] = at_level(run(second), knob, second)
    return out


def level_kind(knob: str, value: float) -> str:
    """The control kind of a second level: ``("channel_ratio", 0.7) -> "ratio70"``, ``("sparsity", 0.9) -> "sparsity90"``."""
    return f"{LEVEL_PREFIX.get(knob, knob)}{int(round(100 * value))}"


def _every_step(step: int, total: int) -> bool:
    return True


@dataclass
class Schedule:
    """*When*: the target sparsity after ``step`` of ``total`` steps, and whether masks are recomputed then."""

    sparsity_at: Callable[[int, int], float]
    update_due: Callable[[int, int], bool] = _every_step

    @property
    def final(self) -> float:
        return self.sparsity_at(1, 1)


@dataclass
class PruneRun:
    model: nn.Module
    masks: dict[str, torch.Tensor]
    report: TrainReport
    trajectory: list[float] = field(default_factory=list)   # mask sparsity after each optimiser step


def prune_while_finetuning(ctx: MethodContext, model: nn.Module, criterion: Criterion, schedule: Schedule, *,
                           structured: bool = False, scope: str = "layer", activations: bool = False,
                           epochs: int | None = None) -> PruneRun:
    """Fine-tune ``model`` while its masks follow ``schedule``; returns the masked model (not yet made physical).

    Masks are set to ``sparsity_at(0, total)`` before the first step, recomputed after every step where
    ``update_due`` holds, and re-applied after every step. Before each optimiser step the gradients
    and optimiser state of masked weights are zeroed, so masked weights receive no update. Structured
    pruning masks only channels that can be removed for real; their BN gamma/beta are zeroed too.
    ``activations=True`` gives the criterion calibration activations at every mask update (costly).
    Checkpoints are selectable on validation only once the final sparsity is reached.
    """
    model = model.to(ctx.device)
    example = ctx.example_input(1)
    chains = find_chains(model, example) if structured else {}
    masks = LayerMasks(model, criterion=criterion, structured=structured, scope=scope,
                       only=set(chains) if structured else None)
    trajectory: list[float] = []

    def views() -> dict[str, LayerView] | None:
        if not activations:
            return None
        full = layer_views(model, example, names=list(masks.layers), batches=ctx.calibration_batches(),
                           activations=True)
        for n, v in masks.views().items():
            full[n].grad = v.grad
        return full

    def enforce(m: nn.Module) -> None:
        masks.apply()
        if chains:
            zero_bn_of_masked_channels(m, chains)

    def before_step(m: nn.Module, info: StepInfo) -> None:
        if info.step == 1:  # the first step (1-based): masks at s_i before any update
            masks.update(schedule.sparsity_at(0, info.total_steps), views())
            enforce(m)
        masks.freeze_masked(info.optimizer)

    def after_step(m: nn.Module, step: int, total: int) -> None:
        enforce(m)  # before re-scoring: a criterion never sees a masked weight as alive
        if schedule.update_due(step, total):
            masks.update(schedule.sparsity_at(step, total), views())
            enforce(m)
        trajectory.append(masks.sparsity())

    def selectable(step: int, total: int) -> bool:
        return schedule.sparsity_at(step, total) >= schedule.final - 1e-9

    report = ctx.train_fn(model, epochs=ctx.epochs_finetune if epochs is None else epochs,
                          hooks=TrainHooks(after_step=after_step, selectable=selectable, before_step=before_step))
    enforce(model)
    return PruneRun(model, masks.masks, report, trajectory)


@torch.no_grad()
def mask_channels(model: nn.Module, keep: dict[str, torch.Tensor], chains: dict[str, Chain]) -> None:
    """Zero every output channel not in ``keep[conv]`` (bool per channel): conv row, bias, BN gamma and beta."""
    mods = dict(model.named_modules())
    for name, k in keep.items():
        conv = mods[name]
        conv.weight[~k] = 0
    zero_bn_of_masked_channels(model, {n: chains[n] for n in keep})


def mask_channels_except(model: nn.Module, name: str, kept: torch.Tensor | list[int],
                         chains: dict[str, Chain]) -> None:
    """``mask_channels`` for one conv given the indices of the channels it keeps."""
    conv = dict(model.named_modules())[name]
    keep = torch.zeros(conv.weight.shape[0], dtype=torch.bool, device=conv.weight.device)
    keep[kept] = True
    mask_channels(model, {name: keep}, chains)


def remove_channels(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` (on CPU) with its exactly-dead output channels removed for real.

    A channel is dead when every layer writing it (all convs feeding a residual sum, say) has a zero
    row and bias there and every BatchNorm carrying it a zero gamma and beta; Torch-Pruning removes it
    from producers, norms and consumers (``methods/pruning/_surgery.py``)."""
    small, _ = remove_dead_channels(model.cpu(), example.cpu())
    return small


def channel_keep(masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weight-shaped structured masks -> one bool per output channel."""
    return {n: m.reshape(m.shape[0], -1).all(1) for n, m in masks.items()}


def prune_channels_once(ctx: MethodContext, model: nn.Module, criterion: Criterion, ratio: float, *,
                        scope: str = "layer", activations: bool = False) -> nn.Module:
    """Remove the fraction ``ratio`` of output channels of every removable conv, lowest ``criterion`` first.

    Channels are selected on the model as given (no fine-tuning); returns a physically smaller copy on CPU.
    The removable convs are the roots of single-producer channel groups (``channel_groups``); the
    surgery is Torch-Pruning's (``remove_lowest_channels`` per layer, ``prune_groups`` for a global ranking).
    """
    model = model.to(ctx.device).eval()
    example = ctx.example_input(1)
    roots = [g.root for g in channel_groups(model.cpu(), example.cpu())
             if len(g.producers) == 1 and isinstance(model.get_submodule(g.root), nn.Conv2d)]
    model = model.to(ctx.device)
    views = layer_views(model, example, names=roots, batches=ctx.calibration_batches() if activations else None,
                        activations=activations)
    scores = {n: criterion(v) for n, v in views.items()}
    if scope == "layer":
        return remove_lowest_channels(ctx, model, {n: channel_scores(s, views[n].weight.shape) for n, s in scores.items()},
                                      ratio)
    masks = masks_from_scores(scores, {n: v.weight.shape for n, v in views.items()}, ratio, structured=True, scope=scope)
    return prune_groups(model, example.cpu(), channel_keep(masks))


def remove_lowest_channels(ctx: MethodContext, model: nn.Module, scores: dict[str, torch.Tensor],
                           ratio: float) -> nn.Module:
    """A copy (on CPU) with the fraction ``ratio`` of output channels of every scored group removed for
    real, lowest score first; ``scores`` maps a group root (``channel_groups``) to one score per channel.

    Per group ``int(ratio * channels)`` channels go (as ``masks_from_scores`` per layer); the surgery is
    Torch-Pruning's (``prune_groups``), so residual and grouped couplings are kept consistent."""
    example = ctx.example_input(1).cpu()
    model = model.cpu().eval()
    groups = {g.root: g for g in channel_groups(model, example)}
    unknown = sorted(set(scores) - set(groups))
    if unknown:
        raise ValueError(f"remove_lowest_channels: {unknown} are not roots of removable channel groups")
    keep = {}
    for root, s in scores.items():
        g = groups[root]
        keep[root] = symmetric_keep(s.detach().cpu().flatten(), g.channels - int(ratio * g.channels), g.conv_groups)
    return prune_groups(model, example, keep)


def gradual_pruning(ctx: MethodContext, method) -> Compressed:
    """The default ``PruningMethod.apply``: prune the trained baseline while fine-tuning, make it physical
    where the method is structured, then ``method.finalize``."""
    run = prune_while_finetuning(ctx, ctx.load_baseline(), method.criterion,
                                 Schedule(method.sparsity_at, method.mask_update_due),
                                 structured=method.structured, scope=method.ranking)
    model = remove_channels(run.model, ctx.example_input(1)) if method.structured else run.model
    out = method.finalize(model.eval(), run.masks)
    out.train_report = run.report
    return out
