"""Speed lives here: int8 vs fp32 measured side by side in their deploy forms (ratios, generous margins),
plus pytest-benchmark timings for `pytest tests/test_bench.py --benchmark-enable`.

Both models go through the harness's own deploy step (``benchmarks.deploy.deploy``: fp32 BN-folded and
TorchScript-frozen in its fastest memory format; int8 as converted by torch.ao on the engine
jacob2017quantization uses), so the ratio printed is the one the leaderboard's int8 rows show.
The issue's goal is >= 3x at batch 64; the machine's own ceiling is printed beside it: the same int8
kernels on one large matrix product against fp32 (on AVX2 without VNNI, int8 multiply-adds go through
vpmaddubsw + vpmaddwd, about twice fp32 FMA throughput, so ~2x is the most a convolution can gain).
Measured: AVX2 without VNNI, 2.13x against a 1.9x ceiling; AVX-512 with VNNI, 2.50x against 3.45x.
"""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.ao.nn.quantized as nnq

from mcbench.benchmarks import deploy
from mcbench.benchmarks.archs import build
from mcbench.benchmarks.tasks import TASKS
from mcbench.methods.registry import REGISTRY

ENGINE = REGISTRY.get("jacob2017quantization").cls.Config().engine   # the engine the int8 rows run on
BATCH = 64


def _int8(fp32: torch.nn.Module) -> torch.nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = ENGINE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(deploy.fold_batchnorm(fp32), get_default_qconfig_mapping(ENGINE),
                              (torch.rand(2, 1, 28, 28),))
        with torch.no_grad():
            for _ in range(4):
                prepared(torch.rand(BATCH, 1, 28, 28))
        return convert_fx(prepared)


@pytest.fixture(scope="module")
def deployed():
    """{"fp32": DeployForm, "int8": DeployForm} of the Fashion-MNIST task CNN at batch 64."""
    if ENGINE not in torch.backends.quantized.supported_engines:
        pytest.skip(f"quantized engine {ENGINE} not built into this torch")
    torch.manual_seed(0)
    torch.set_num_threads(2)
    fp32 = build(TASKS["fmnist"].baseline, 1, 10).eval()
    x = torch.rand(BATCH, 1, 28, 28)
    return {"fp32": deploy.deploy(fp32, x), "int8": deploy.deploy(_int8(fp32), x)}


def _gemm_ceiling(n: int = 256, k: int = 1024) -> dict[str, float]:
    """p50 ms of one (n x k) @ (k x k) product: fp32 nn.Linear against the engine's int8 quantized Linear."""
    torch.backends.quantized.engine = ENGINE
    lin = torch.nn.Linear(k, k).eval()
    q = nnq.Linear(k, k)
    q.set_weight_bias(torch.quantize_per_tensor(lin.weight.detach(), 0.01, 0, torch.qint8), lin.bias.detach())
    x = torch.rand(n, k)
    xq = torch.quantize_per_tensor(x, 0.01, 0, torch.quint8)
    with torch.inference_mode():
        return deploy.time_candidates({"fp32": lambda _: lin(x), "int8": lambda _: q(xq)}, x, 3, 15)


def test_int8_faster_than_fp32_at_batch_64_in_deploy_form(deployed):
    assert deployed["int8"].path.startswith("int8") and deployed["fp32"].path.startswith("fp32 bn-folded")
    x = torch.rand(BATCH, 1, 28, 28)
    with torch.inference_mode():
        p50 = deploy.time_candidates({k: f.module for k, f in deployed.items()}, x, 5, 20)
    ratio = p50["fp32"] / p50["int8"]
    gemm = _gemm_ceiling()
    ceiling = gemm["fp32"] / gemm["int8"]
    print(f"\nint8 vs fp32 deploy form at batch {BATCH}, engine {ENGINE}: {ratio:.2f}x "
          f"(p50 {p50['fp32']:.2f} ms [{deployed['fp32'].path}] -> {p50['int8']:.2f} ms [{deployed['int8'].path}]); "
          f"goal >= 3x; this CPU's int8/fp32 matrix-product ceiling: {ceiling:.2f}x "
          f"({torch.backends.cpu.get_cpu_capability()})")
    assert ratio > 1.3  # measured about 2x here; the margin absorbs noisy shared CI machines


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_bench_forward_batch64(benchmark, deployed, which):
    form = deployed[which]
    x = torch.rand(BATCH, 1, 28, 28)
    benchmark.group = "fmnist task CNN, deploy form, batch 64"
    benchmark.extra_info.update(path=form.path, engine=ENGINE if which == "int8" else "",
                                cpu_capability=torch.backends.cpu.get_cpu_capability())
    with torch.inference_mode():
        out = benchmark(form.module, x)
    assert out.shape == (BATCH, 10)
