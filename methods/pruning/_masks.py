"""Layer masks shared by pruning methods (the 'pruner' layer; criteria and schedules live in paper files).

Unstructured: each Conv/Linear weight gets its own mask; at sparsity ``s`` the
``floor(s * numel)`` lowest-importance weights of every layer are zeroed
(layer-wise, as in Zhu & Gupta 2017, Section 3). Structured: whole output
channels (rows of the weight) are masked by their summed importance.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

PRUNABLE = (nn.Conv2d, nn.Linear)


class LayerMasks:
    def __init__(self, model: nn.Module, importance: Callable[[torch.Tensor], torch.Tensor],
                 structured: bool = False, only: set[str] | None = None) -> None:
        self.layers = {n: m for n, m in model.named_modules()
                       if isinstance(m, PRUNABLE) and (only is None or n in only)}
        self.importance = importance
        self.structured = structured
        self.masks = {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in self.layers.items()}

    @torch.no_grad()
    def update(self, sparsity: float) -> None:
        for name, layer in self.layers.items():
            w = layer.weight
            scores = self.importance(w)
            if self.structured:
                scores = scores.reshape(w.shape[0], -1).sum(1)
            k = int(sparsity * scores.numel())
            mask = torch.ones_like(scores, dtype=torch.bool)
            if k > 0:
                drop = torch.topk(scores.flatten(), k, largest=False).indices
                mask.view(-1)[drop] = False
            if self.structured:
                mask = mask.view(-1, *([1] * (w.dim() - 1))).expand_as(w)
            self.masks[name] = mask

    @torch.no_grad()
    def apply(self) -> None:
        for name, layer in self.layers.items():
            layer.weight.mul_(self.masks[name])

    def sparsity(self) -> float:
        total = sum(m.numel() for m in self.masks.values())
        return 1.0 - sum(int(m.sum()) for m in self.masks.values()) / max(1, total)
