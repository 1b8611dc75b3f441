"""Operation counts the FLOP counter cannot see, summed by forward hooks.

``tally(model, x, per_layer)`` runs ``model(x)`` once with a forward hook on every module;
``per_layer(module, input, output)`` returns a dict of counts for that call (or ``None``), and
the totals over the batch come back. A method hands ``lambda m, x: tally(m, x, fn)`` to the
harness as ``Compressed.count_ops``; the harness averages it over the test inputs.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

LayerOps = Callable[[nn.Module, torch.Tensor, torch.Tensor], "dict[str, float] | None"]


@torch.no_grad()
def tally(model: nn.Module, x: torch.Tensor, per_layer: LayerOps) -> dict[str, float]:
    totals: Counter = Counter()

    def hook(mod, inp, out):
        counts = per_layer(mod, inp[0], out)
        if counts:
            totals.update(counts)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return {k: float(v) for k, v in totals.items()}


def nonzero_macs(layer: nn.Module, x: torch.Tensor, out: torch.Tensor | None = None, *,
                 inputs: bool = True) -> dict[str, float] | None:
    """MACs of a Conv2d/Linear over a batch: dense, with zero weights skipped, and with zero
    weights and zero inputs skipped (the last depends on the input: ReLU zeros vary per image;
    ``inputs=False`` leaves it out, for counters that do not need it).

    Counted exactly by running the layer's own operation on 0/1 indicator tensors (padding zeros
    are never counted, so "dense" here is below the FLOP counter's figure for padded convs). The
    first two do not depend on the input's values, so they are counted on one sample and scaled by
    the batch size; sums are taken in float64 (a float32 sum of large counts is not exact).
    """
    if isinstance(layer, nn.Linear):
        op = lambda a, w: F.linear(a, w)  # noqa: E731
    elif isinstance(layer, nn.Conv2d):
        op = lambda a, w: layer._conv_forward(a, w, None)  # noqa: E731
    else:
        return None
    batch, one = x.shape[0], torch.ones_like(x[:1])
    nz_w = (layer.weight != 0).to(layer.weight.dtype)
    counts = {"macs_dense": batch * op(one, torch.ones_like(layer.weight)).sum(dtype=torch.float64).item(),
              "macs_nonzero_weights": batch * op(one, nz_w).sum(dtype=torch.float64).item()}
    if inputs:
        counts["macs_nonzero_weights_and_inputs"] = op((x != 0).to(x.dtype), nz_w).sum(dtype=torch.float64).item()
    return counts
