"""Sparse-kernel latency (benchmarks/sparse_kernel.py): CSR linear layers reproduce the dense model, only
sparse-enough exact ``nn.Linear`` layers are converted, and the harness records the side-by-side timing."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mcbench.benchmarks import sparse_kernel
from mcbench.benchmarks.runner import plan
from mcbench.methods.protocols import Compressed, CostLedger


def _prune_(layer: nn.Module, keep: float, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.mul_((torch.rand(layer.weight.shape, generator=g) < keep).float())


def _mlp(keep=(0.1, 0.1, 0.9)):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.BatchNorm1d(48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU(),
                      nn.Linear(32, 10)).eval()
    with torch.no_grad():
        m[2].running_mean.uniform_(-1, 1)
        m[2].running_var.uniform_(0.5, 2)
    for layer, k in zip((m[1], m[4], m[6]), keep):
        _prune_(layer, k)
    return m


def test_only_sparse_enough_exact_linears_are_selected():
    m = _mlp()
    assert set(sparse_kernel.sparse_linears(m)) == {"1", "4"}         # the 90%-dense classifier stays dense
    sub = type("MyLinear", (nn.Linear,), {})(8, 8)
    with torch.no_grad():
        sub.weight.zero_()
    assert sparse_kernel.sparse_linears(nn.Sequential(sub)) == {}       # a subclass may transform its weight


def test_csr_linear_stores_only_nonzeros_and_matches_dense():
    lin = nn.Linear(40, 20)
    _prune_(lin, 0.2)
    csr = sparse_kernel.CSRLinear(lin)
    assert csr.weight.layout == torch.sparse_csr
    assert csr.weight.values().numel() == int(torch.count_nonzero(lin.weight)) < lin.weight.numel()
    x = torch.randn(5, 40)
    with torch.inference_mode():   # the harness times under inference mode
        torch.testing.assert_close(csr(x), lin(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 16])
def test_sparse_deploy_form_reproduces_the_model_and_names_its_path(batch):
    m = _mlp()
    x = torch.randn(batch, 1, 8, 8)
    form = sparse_kernel.deploy_sparse(m, x, check_inputs=(torch.randn(3, 1, 8, 8),))
    assert form.dropped == [] and "csr" in form.path and "2 of 3 linear" in form.path and "bn-folded" in form.path
    with torch.inference_mode():
        torch.testing.assert_close(form.module(x), m(x), rtol=1e-4, atol=1e-4)
    assert isinstance(m[1], nn.Linear) and isinstance(m[2], nn.BatchNorm1d)   # the scored model is untouched


def test_dense_model_has_no_sparse_form():
    m = _mlp(keep=(1.0, 1.0, 1.0))
    assert sparse_kernel.deploy_sparse(m, torch.randn(2, 1, 8, 8)) is None


def test_harness_times_sparse_linears_next_to_the_dense_form(smoke_harness, monkeypatch):
    h = smoke_harness
    base, report = h.trained("baseline", 0)
    model = h.build("baseline")
    model.load_state_dict(base.state_dict())
    _prune_(model.fc, 0.1)
    monkeypatch.setattr(h, "_compress", lambda spec: (Compressed(model, real=True, note="t", train_report=report),
                                                      CostLedger(), False))
    spec = plan(h.cfg.__class__(task="digits", budget="smoke", methods=["baseline"], seeds=[0]), h.task,
                h.dataset_label)[0]
    extra = json.loads(h.run(spec).extra_json)
    sk = extra["sparse_kernel"]
    assert list(sk["linear_csr_density"]) == ["fc"] and sk["linear_csr_density"]["fc"] <= 0.2
    for b in ("b1", "b64"):
        assert "csr" in sk[b]["path"] and sk[b]["speedup_vs_dense"] == pytest.approx(
            sk[b]["dense_latency_ms_p50_cpu"] / sk[b]["latency_ms_p50_cpu"])


def test_harness_dense_row_has_no_sparse_kernel_entry(smoke_harness, monkeypatch):
    h = smoke_harness
    base, report = h.trained("baseline", 0)
    monkeypatch.setattr(h, "_compress", lambda spec: (Compressed(base, real=True, note="t", train_report=report),
                                                      CostLedger(), False))
    spec = plan(h.cfg.__class__(task="digits", budget="smoke", methods=["baseline"], seeds=[0]), h.task,
                h.dataset_label)[0]
    assert "sparse_kernel" not in json.loads(h.run(spec).extra_json)


def test_paper_page_section_shows_the_csr_timing_and_escapes():
    import pandas as pd

    from mcbench.site.pages import _sparse_kernel_section

    sk = {"linear_csr_density": {"fc1": 0.05}, "conv_note": "<b>dense</b>",
          "b1": {"speedup_vs_dense": 0.5, "latency_ms_p50_cpu": 2.0, "dense_latency_ms_p50_cpu": 1.0, "path": "p"},
          "b64": {"speedup_vs_dense": 1.8, "latency_ms_p50_cpu": 5.0, "dense_latency_ms_p50_cpu": 9.0, "path": "p"}}
    rows = pd.DataFrame([{"method": "m", "task": "mnist", "budget": "cpu", "dataset": "d", "setting": "m/cpu",
                          "extra_json": json.dumps({"sparse_kernel": sk})},
                         {"method": "m", "task": "fmnist", "budget": "default", "dataset": "d", "setting": "",
                          "extra_json": "{}"}])
    text = _sparse_kernel_section(rows)
    assert "batch 1: 0.500×" in text and "batch 64: 1.80×" in text and "5.0% nonzero" in text
    assert "paper setting" in text and "m/cpu" in text
    assert "<b>" not in text and "fmnist" not in text
    assert _sparse_kernel_section(rows.iloc[1:]) == ""
