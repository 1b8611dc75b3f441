"""Layer masks shared by pruning methods (the 'pruner' layer; criteria and schedules live in paper files).

Unstructured: each Conv/Linear weight gets its own mask; at sparsity ``s`` the
``floor(s * numel)`` lowest-scoring weights of every layer are zeroed (``scope="layer"``,
as in Zhu & Gupta 2017, Section 3) or the ``floor(s * total)`` lowest of all layers together
(``scope="global"``). Structured: whole output channels (rows of the weight) are masked by
their summed score; the fraction then counts channels, not weights.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from mcbench.methods.pruning._layerview import PRUNABLE, Criterion, LayerView, following_bn, weight_criterion

SCOPES = ("layer", "global")


def channel_scores(scores: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return scores if scores.dim() == 1 else scores.reshape(shape[0], -1).sum(1)


def _lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        keep[torch.topk(scores.flatten().float(), k, largest=False).indices] = False
    return keep


@torch.no_grad()
def masks_from_scores(scores: dict[str, torch.Tensor], shapes: dict[str, torch.Size], sparsity: float, *,
                      structured: bool = False, scope: str = "layer") -> dict[str, torch.Tensor]:
    """Boolean keep-masks (weight-shaped) dropping the lowest-scoring fraction ``sparsity``.

    ``scores[name]`` is weight-shaped (structured: summed per output channel) or, for
    structured pruning, one score per output channel.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown ranking scope {scope!r}; expected one of {', '.join(SCOPES)}")
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    flat = {n: (channel_scores(s, shapes[n]) if structured else s).flatten() for n, s in scores.items()}
    if scope == "layer":
        keeps = {n: _lowest(s, int(sparsity * s.numel())) for n, s in flat.items()}
    else:
        allscores = torch.cat([s.float().cpu() for s in flat.values()])
        keep_all = _lowest(allscores, int(sparsity * allscores.numel()))
        keeps, at = {}, 0
        for n, s in flat.items():
            keeps[n] = keep_all[at:at + s.numel()].to(s.device)
            at += s.numel()
    out = {}
    for n, keep in keeps.items():
        shape = shapes[n]
        out[n] = keep.view(-1, *([1] * (len(shape) - 1))).expand(shape).clone() if structured else keep.view(shape)
    return out


class LayerMasks:
    """Masks of the prunable layers of one model, recomputed by a criterion on ``update``."""

    def __init__(self, model: nn.Module, importance: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 structured: bool = False, only: set[str] | None = None, *, criterion: Criterion | None = None,
                 scope: str = "layer") -> None:
        if (importance is None) == (criterion is None):
            raise ValueError("LayerMasks: give exactly one of importance(weight) or criterion(view)")
        self.layers = {n: m for n, m in model.named_modules()
                       if isinstance(m, PRUNABLE) and (only is None or n in only)}
        self.criterion = criterion or weight_criterion(importance)
        self.structured = structured
        self.scope = scope
        mods = dict(model.named_modules())
        self._bn = {n: mods[b] for n, b in following_bn(model).items() if n in self.layers}
        self.masks = {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in self.layers.items()}

    def views(self) -> dict[str, LayerView]:
        """Light views (weight, current gradient, following BN) of the masked layers."""
        return {n: LayerView(n, m, m.weight, None if m.weight.grad is None else m.weight.grad.detach(), self._bn.get(n))
                for n, m in self.layers.items()}

    @torch.no_grad()
    def update(self, sparsity: float, views: dict[str, LayerView] | None = None) -> None:
        views = views or self.views()
        scores = {n: self.criterion(views[n]) for n in self.layers}
        shapes = {n: m.weight.shape for n, m in self.layers.items()}
        self.masks = masks_from_scores(scores, shapes, sparsity, structured=self.structured, scope=self.scope)

    @torch.no_grad()
    def apply(self) -> None:
        for name, layer in self.layers.items():
            layer.weight.mul_(self.masks[name])

    @torch.no_grad()
    def freeze_masked(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Masked weights get no update: zero their gradients and every weight-shaped optimiser state
        (AdamW ``exp_avg``/``exp_avg_sq``, SGD momentum), so ``optimizer.step()`` leaves them exactly 0."""
        for name, layer in self.layers.items():
            dead = ~self.masks[name]
            w = layer.weight
            if w.grad is not None:
                w.grad.masked_fill_(dead, 0.0)
            if optimizer is not None:
                for v in optimizer.state.get(w, {}).values():
                    if torch.is_tensor(v) and v.shape == w.shape:
                        v.masked_fill_(dead, 0)

    def sparsity(self) -> float:
        total = sum(m.numel() for m in self.masks.values())
        return 1.0 - sum(int(m.sum()) for m in self.masks.values()) / max(1, total)
