"""The CUDA path: every registered method applied on a GPU, and a full row measured there.

Skips without CUDA (CI has none). On a GPU machine, ``pytest tests/test_gpu.py`` runs the walk of
``tests/test_methods.py`` with the harness on ``--device cuda``: each method trains on the GPU through its
context, returns a model that runs on CUDA inputs (or, for int8 models, on the CPU where those kernels
live), and reports the validation score of the model it returns. The extended tier's methods are in the slow
tier here too.
"""
from __future__ import annotations

import pytest
import torch

from mcbench.benchmarks.train import accuracy_pct

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]

from test_methods import WALK_KEYS, apply_for_walk  # noqa: E402  (after the skip marks: same walk, same configs)


@pytest.fixture(scope="module")
def cuda_harness(tmp_path_factory, digits):
    from mcbench.benchmarks.runner import Harness, SweepConfig

    root = tmp_path_factory.mktemp("cuda-harness")
    cfg = SweepConfig(task="digits", budget="smoke", seeds=[0], threads=2, db=root / "r.sqlite",
                      cache_dir=root / "ckpt", device="cuda")
    return Harness(cfg, splits=digits, log=lambda *_: None)


@pytest.fixture(scope="module")
def applied_cuda(cuda_harness):
    out = {}

    def get(key):
        if key not in out:
            torch.cuda.reset_peak_memory_stats()
            c = apply_for_walk(cuda_harness, key)
            out[key] = c, torch.cuda.max_memory_allocated()
        return out[key]

    return get


@pytest.mark.parametrize("key", WALK_KEYS)
def test_method_trains_and_runs_on_cuda(key, applied_cuda, digits):
    """Applied in a CUDA context, the method trains on the GPU and its model runs on CUDA inputs, as the harness scores
    it: moved to the GPU (a deployed form may come back on the CPU: surgery, sparse snapshots), or on the CPU
    for int8 models, whose kernels are CPU-only. The row's validation score is the harness's own measurement
    (test_harness.py), so the method's report is not compared here."""
    c, gpu_bytes = applied_cuda(key)
    if c.train_report is not None:
        assert gpu_bytes > 0, f"{key} trained without touching the GPU"
    device = torch.device("cpu") if c.quant_engine else torch.device("cuda")
    model = c.model.to(device)
    assert all(t.device.type == device.type for t in [*model.parameters(), *model.buffers()])
    with torch.no_grad():
        y = model(digits.x_test[:16].to(device))
    assert y.shape == (16, digits.num_classes) and torch.isfinite(y).all()
    assert 0 <= accuracy_pct(model, digits.x_val, digits.y_val, device=device) <= 100


@pytest.mark.parametrize("method", ["baseline", "courbariaux2016binarized", "chen2019addernet", "jacob2017quantization"])
def test_row_on_cuda_records_gpu_latency_beside_cpu_deploy_latency(method, cuda_harness):
    """A row run on CUDA: trained there, CUDA-event latency at batch 1 and 64, GPU name and peak memory, and
    the CPU deploy-form latency beside it (every row has that)."""
    cfg = cuda_harness.cfg.__class__(**{**cuda_harness.cfg.__dict__, "methods": [method]})
    (spec,) = cuda_harness.plan(cfg)
    row = cuda_harness.run(spec)
    assert row.device == "cuda" and row.gpu_name == torch.cuda.get_device_name(0)
    if row.quant_engine:        # int8 kernels are CPU-only: no CUDA latency, and the row says why
        assert row.latency_ms_p50_cuda_b64 is None and "CPU-only" in row.extra_json
    else:
        assert row.latency_ms_p50_cuda_b1 > 0 and row.latency_ms_p50_cuda_b64 > 0
        assert row.peak_gpu_mem_bytes > 0
    assert row.latency_ms_p50_cpu_b64 > 0 and 0 <= row.top1_acc_pct <= 100
