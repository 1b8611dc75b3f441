"""To prune, or not to prune: exploring the efficacy of pruning for model compression.

Zhu, Gupta (2017), arXiv:1710.01878. Key: zhu2017prune.
Implements gradual magnitude pruning (Section 3, Eq. 1):
    s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (n * dt))^3   for t in {t_0, t_0 + dt, ..., t_0 + n*dt}
    importance = |w|; every Conv/Linear layer is pruned to s_t by masking its smallest weights,
    masks are recomputed every dt steps and re-applied after every optimiser step; masked weights
    receive no update (their gradients and AdamW state are zeroed before each step, as the paper's
    masked weights take no part in training), so a pruned weight stays exactly 0 and never re-enters.
    The flow is ``methods/flows/prune.py:prune_while_finetuning``.
Real: storage: the pruned weights are written to the encoded sparse file (float32 nonzeros plus
Huffman-coded relative indices, ``_unstructured.sparse_compressed``), measured on disk and decoded
and re-scored by the harness.
Simulated: any sparse speedup (no dense speedup: latency is measured on dense kernels).
Deviations: the schedule runs over fractions of the fine-tuning steps the harness grants
(begin/end fractions) instead of absolute steps; biases and BN parameters are not pruned. A second
level (``sparsity_control``, default 90%) is a control row from its own run, for the
accuracy-vs-sparsity curve. The paper reports unstructured pruning only (its comparison is
large-sparse against small-dense models), so there is no structured variant.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field
import torch
from torch import nn

from mcbench.methods.flows import prune
from mcbench.methods.protocols import Compressed, MethodContext, PruningMethod
from mcbench.methods.pruning._unstructured import prunable_layers, sparse_compressed
from mcbench.methods.registry import register


def cubic_sparsity(step: int, total: int, s_i: float, s_f: float, begin: float, end: float) -> float:
    """Eq. 1 with t_0 = begin * total and n * dt = (end - begin) * total (clamped outside)."""
    t0, t1 = begin * total, end * total
    if step <= t0:
        return s_i
    if step >= t1:
        return s_f
    return s_f + (s_i - s_f) * (1.0 - (step - t0) / (t1 - t0)) ** 3


@register(family="pruning")
class zhu2017prune(PruningMethod):
    structured = False

    @dataclass
    class Config:
        final_sparsity: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.8     # s_f, fraction of zero weights per layer
        initial_sparsity: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0   # s_i
        begin_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0     # t_0 as a fraction of the fine-tuning steps
        end_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.75      # t_0 + n dt as a fraction (then s_f)
        frequency_steps: Annotated[int, Field(ge=1)] = 10                 # dt
        sparsity_control: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9   # a second level s_f (0: none)

        def __post_init__(self) -> None:
            if self.initial_sparsity > self.final_sparsity:
                raise ValueError(f"initial_sparsity={self.initial_sparsity} > final_sparsity={self.final_sparsity} "
                                 "(the schedule only prunes more)")
            if self.begin_fraction >= self.end_fraction:
                raise ValueError(f"begin_fraction={self.begin_fraction} must be < end_fraction={self.end_fraction}")

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        return prune.at_levels(lambda s: self._stored(ctx, prune.gradual_pruning(ctx, self._at(s))), "sparsity",
                               c.final_sparsity, c.sparsity_control)

    @staticmethod
    def _stored(ctx: MethodContext, out: Compressed) -> Compressed:
        """The pruned model as the deployable sparse file (its zeros are the masks: masked weights stay 0)."""
        model = out.model
        masks = {n: (model.get_submodule(n).weight.detach() != 0).cpu() for n in prunable_layers(model)}
        return sparse_compressed(model, masks, ctx.build_baseline, report=out.train_report, extra=out.extra,
                                 note="gradual magnitude pruning, unstructured masks")

    def _at(self, s_f: float) -> "zhu2017prune":
        """This method with final sparsity ``s_f`` (itself when it already prunes to ``s_f``)."""
        c = self.config
        if s_f == c.final_sparsity:
            return self
        return type(self)(**{**self.config_dict(), "final_sparsity": s_f, "sparsity_control": 0.0,
                             "initial_sparsity": min(c.initial_sparsity, s_f)})

    def importance(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.detach().abs()

    def sparsity_at(self, step: int, total_steps: int) -> float:
        c = self.config
        return cubic_sparsity(step, total_steps, c.initial_sparsity, c.final_sparsity, c.begin_fraction, c.end_fraction)

    def mask_update_due(self, step: int, total_steps: int) -> bool:
        return step % self.config.frequency_steps == 0 or step >= self.config.end_fraction * total_steps

    def finalize(self, model: nn.Module, masks: dict[str, torch.Tensor]) -> Compressed:
        total = sum(m.numel() for m in masks.values())
        density = sum(int(m.sum()) for m in masks.values()) / max(1, total)
        return Compressed(
            model, real=False,
            note="unstructured masks: zeros stored dense, dense kernels (sparse storage is theoretical)",
            bits_per_weight=32.0 * density + 1.0,
            extra={"achieved_sparsity_pruned_layers": 1.0 - density},
        )
