"""Shared fixtures: tiny real data (scikit-learn digits) and a smoke-budget harness."""
from __future__ import annotations

import pytest
import torch

from mcbench.benchmarks.data import load_digits


@pytest.fixture(scope="session")
def digits():
    return load_digits()


@pytest.fixture(scope="session")
def smoke_harness(tmp_path_factory, digits):
    """A digits/smoke harness with its own store and checkpoint cache (trained models are shared)."""
    from mcbench.benchmarks.runner import Harness, SweepConfig

    root = tmp_path_factory.mktemp("harness")
    torch.set_num_threads(2)
    cfg = SweepConfig(task="digits", budget="smoke", seeds=[0], threads=2, db=root / "r.sqlite",
                      cache_dir=root / "ckpt")
    return Harness(cfg, splits=digits, log=lambda *_: None)
