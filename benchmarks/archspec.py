"""``ArchSpec``: an architecture as data (builder name + sizes), without torch.

The builders live in :mod:`mcbench.benchmarks.archs`; the spec is kept apart so that readers of the task
recipes (the site's methodology page, ``mcbench tasks``) need not import torch.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchSpec:
    name: str                      # a key of ARCHS: "cnn", "mlp", ...
    widths: tuple[int, ...]        # cnn: output channels per stage; mlp: hidden sizes
    depth: int = 1                 # cnn: conv-BN-ReLU blocks per stage
    dropout: float = 0.0           # mlp: dropout after each hidden layer
