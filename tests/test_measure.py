"""Each measure on a model whose answer is known by hand."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mcbench.benchmarks import measure


def test_params_of_linear():
    m = nn.Linear(10, 5)  # 10*5 weights + 5 biases
    assert measure.count_params(m) == (55, 55)
    with torch.no_grad():
        m.weight[:2].zero_()  # 20 zeros
    assert measure.count_params(m) == (55, 35)


def test_macs_of_known_conv():
    # Conv2d(3->8, 3x3, no padding) on 10x10: output 8x8x8, each output does 3*3*3 MACs
    m = nn.Conv2d(3, 8, 3, bias=False)
    flops = measure.count_flops(m, torch.randn(1, 3, 10, 10))
    assert measure.macs_from_flops(flops) == 8 * 8 * 8 * 27
    assert flops == 2 * 8 * 8 * 8 * 27


def test_macs_of_linear_batch_scales():
    m = nn.Linear(100, 10)
    assert measure.macs_from_flops(measure.count_flops(m, torch.randn(4, 100))) == 4 * 100 * 10


def test_theoretical_bytes():
    m = nn.Linear(10, 5)  # 50 weights at b bits + 5 biases at 32 bits
    assert measure.theoretical_bytes(m, 32) == 55 * 4
    assert measure.theoretical_bytes(m, 8) == 50 + 20
    assert measure.theoretical_bytes(m, 1) == round(50 / 8 + 20)


def test_serialized_bytes_holds_the_weights_and_gzip_sees_zeros():
    m = nn.Linear(256, 256)
    disk, gz = measure.serialized_bytes(m)
    raw = (256 * 256 + 256) * 4
    assert raw < disk < raw + 4096  # float32 payload plus a small container overhead
    with torch.no_grad():
        m.weight.zero_()
    _, gz_zero = measure.serialized_bytes(m)
    assert gz_zero < gz / 10


def test_latency_summary_statistics():
    s = measure.summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s.p50_ms == 3.0
    assert s.p90_ms == pytest.approx(4.6)  # linear interpolation between 4 and 5
    assert s.mean_ms == 3.0
    assert s.std_ms == pytest.approx(math.sqrt(2.5))
    with pytest.raises(ValueError):
        measure.summarize([])


def test_latency_pair_orders_a_heavier_model_slower():
    light = nn.Linear(64, 64)
    heavy = nn.Sequential(*[nn.Linear(512, 512) for _ in range(8)], nn.Linear(512, 64))
    x_light = torch.randn(64, 64)
    with torch.inference_mode():
        lat_h, lat_l = measure.latency_pair_cpu(
            nn.Sequential(nn.Linear(64, 512), heavy), light, x_light, warmup=3, runs=15)
    assert lat_h.n == lat_l.n == 15
    assert lat_h.p50_ms / lat_l.p50_ms > 2  # ~9 512x512 layers vs one 64x64: a ratio, generous margin


def test_matmul_gflops_positive():
    assert measure.matmul_gflops(n=128, repeats=3) > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_latency_uses_events():
    s = measure.latency_cuda(nn.Linear(256, 256), torch.randn(64, 256), warmup=3, runs=10)
    assert s.n == 10 and s.p50_ms > 0


def test_cuda_latency_refuses_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the refusal path cannot be exercised")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        measure.latency_cuda(nn.Linear(4, 4), torch.randn(1, 4), warmup=1, runs=1)
