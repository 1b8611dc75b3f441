"""scripts/structured_speedup.py: the speedup-vs-MACs benchmark's row (no wall-clock assertion: ratios only)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from mcbench.benchmarks.archs import SmallCNN

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "structured_speedup.py"


def _script():
    spec = importlib.util.spec_from_file_location("structured_speedup", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_row_relates_speedup_to_the_macs_reduction_of_a_half_width_net():
    s = _script()
    torch.manual_seed(0)
    full, half = SmallCNN(1, 10, (8, 16, 32)).eval(), SmallCNN(1, 10, (4, 8, 16)).eval()
    r = s.speedup_row("half", half, full, torch.randn(64, 1, 12, 12), runs=3, warmup=1)
    assert 3.0 < r.macs_reduction < 4.5                     # half of both sides of the inner convs
    assert r.speedup_b64 == pytest.approx(r.baseline_latency_ms_p50_b64 / r.latency_ms_p50_b64)
    assert r.efficiency == pytest.approx(r.speedup_b64 / r.macs_reduction)
    assert r.deploy_path.startswith("fp32")


def test_every_structured_pruning_method_is_benchmarked():
    keys = _script().structured_methods()
    assert {"mittal2018recovering", "he2017channel", "yu2017nisp", "tang2020scop"} <= set(keys)
    assert "zhu2017prune" not in keys and "carreiraperpinan2018learning" not in keys
