"""The compact-network flow: build the paper's architecture for the task, train it from scratch.

``CompactMethod.apply`` is ``return train_from_scratch(ctx, self.build(ctx))``; a paper that
composes families (a compact student trained by distillation, a compact net then quantized)
calls ``build`` and the other family's flow instead.
"""
from __future__ import annotations

from torch import nn

from mcbench.methods.protocols import Compressed, MethodContext


def train_from_scratch(ctx: MethodContext, model: nn.Module,
                       note: str = "compact architecture trained from scratch", lr_scale: float = 1.0) -> Compressed:
    """Train ``model`` (untrained) for the scratch budget on the task; it is physically what it is.

    ``lr_scale`` multiplies the recipe's learning rate (e.g. a network without batch normalisation
    that diverges at the recipe's rate); the method's docstring says why.
    """
    model = model.to(ctx.device)
    report = ctx.train_fn(model, epochs=ctx.epochs_scratch, lr_scale=lr_scale)
    return Compressed(model.eval(), real=True, note=note, train_report=report)
