"""Measures of a method's own deployable artefacts: its encoded file and its operation counts.

``measure_encoded`` writes ``Compressed.encoded.encode(model)`` to a real file, counts its bytes,
reads the file back, decodes it and scores the decoded model on the test split. The decoded
model must reproduce the scored accuracy within the method's stated tolerance, else the run
fails with ``EncodedModelMismatch`` and no row is stored. ``average_ops`` sums a method's
``count_ops`` over the test inputs and returns per-sample means.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import torch
from torch import nn

from mcbench.benchmarks.errors import EncodedModelMismatch
from mcbench.benchmarks.train import accuracy_pct
from mcbench.methods.protocols import EncodedModel, OpsCounter


@dataclass
class EncodedMeasure:
    size_bytes: int          # measured: bytes of the encoded file on disk
    top1_acc_pct: float      # the decoded model on the test split
    format: str


def measure_encoded(enc: EncodedModel, model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor,
                    scored_acc_pct: float, method: str = "") -> EncodedMeasure:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.enc")
        with open(path, "wb") as f:
            f.write(enc.encode(model))
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            decoded = enc.decode(f.read())
    acc = accuracy_pct(decoded.cpu().eval(), x_test, y_test)
    if abs(acc - scored_acc_pct) > enc.acc_tolerance_pp:
        raise EncodedModelMismatch(
            f"{method}: the decoded {enc.format!r} model scores {acc:.4f}% on test, the deployed model "
            f"{scored_acc_pct:.4f}% (tolerance {enc.acc_tolerance_pp} pp); the encoding is lossy or broken")
    return EncodedMeasure(size, acc, enc.format)


def average_ops(count_ops: OpsCounter, model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> dict:
    """``{"per_sample": {name: mean count}, "samples": n}`` over the inputs ``x``."""
    totals: dict[str, float] = {}
    for i in range(0, len(x), batch_size):
        for k, v in count_ops(model, x[i:i + batch_size]).items():
            totals[k] = totals.get(k, 0.0) + float(v)
    n = max(1, len(x))
    return {"per_sample": {k: v / n for k, v in sorted(totals.items())}, "samples": len(x)}
