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


def known_arch_names() -> set[str]:
    """The names registered with ``@arch("name")`` in :mod:`mcbench.benchmarks.archs`, read from its source
    (so validating a spec's name needs no torch); ``tests/test_site_real.py`` checks it against ``ARCHS``."""
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parent / "archs.py").read_text(encoding="utf-8")
    return set(re.findall(r"""^@arch\(\s*["']([^"']+)["']\s*\)""", source, flags=re.M))
