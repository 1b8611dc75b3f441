"""Measures. Each returns plain numbers; storing and ranking happen elsewhere.

Theoretical: parameter counts, bit-width bytes, MACs/FLOPs (torch.utils.flop_counter;
MACs = FLOPs / 2 because the counter counts a multiply-add as 2 FLOPs).
Measured: bytes on disk, gzip bytes, latency, matmul throughput.
"""
from __future__ import annotations

import gzip

import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


# --------------------------------------------------------------------------- parameters and size
def _quantized_weights(m: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Weights/biases held by torch.ao quantized modules (packed; not in ``parameters()``)."""
    w = getattr(m, "weight", None)
    if callable(w):
        weight = w()
        yield "weight", weight.dequantize() if weight.is_quantized else weight
        b = m.bias() if callable(getattr(m, "bias", None)) else None
        if b is not None:
            yield "bias", b


def weight_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor, bool]]:
    """(name, tensor, is_layer_weight) for every learnable tensor, float or int8-packed."""
    for mname, m in model.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            yield f"{mname}.{pname}", p.detach(), pname == "weight" and isinstance(m, WEIGHT_LAYERS)
        for pname, t in _quantized_weights(m):
            yield f"{mname}.{pname}", t.detach(), pname == "weight"


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, nonzero) learnable values, including int8-packed weights of quantized modules."""
    total = nonzero = 0
    for _, t, _ in weight_tensors(model):
        total += t.numel()
        nonzero += int(torch.count_nonzero(t).item())
    return total, nonzero


def theoretical_bytes(model: nn.Module, bits_per_weight: float) -> int:
    """Layer weights at ``bits_per_weight``, every other learnable value (biases, BN) at 32 bits."""
    bits = 0.0
    for _, t, is_weight in weight_tensors(model):
        bits += t.numel() * (bits_per_weight if is_weight else 32)
    return int(round(bits / 8))


def serialized_bytes(model: nn.Module) -> tuple[int, int]:
    """(bytes on disk, gzip -9 bytes) of ``torch.save(model.state_dict())`` written to a real file."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.pt")
        torch.save(model.state_dict(), path)
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            gz = len(gzip.compress(f.read(), compresslevel=9))
    return size, gz


# --------------------------------------------------------------------------- compute
@torch.no_grad()
def count_flops(model: nn.Module, example: torch.Tensor) -> int:
    """Forward FLOPs at ``example``'s shape, via torch.utils.flop_counter (counts conv/matmul ops)."""
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(example)
    return int(counter.get_total_flops())


def recall_at_k_pct(embeddings: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Recall@K (%) for retrieval (Oh Song et al. 2016 protocol): every item is a query, the gallery is all
    the other items; a query scores 1 if one of its ``k`` nearest neighbours (Euclidean) has its label.

    Computed on the held-out classes of a retrieval task (``fmnist-retrieval``), never on training classes.
    """
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError("recall_at_k_pct needs (N, D) embeddings and N labels")
    if not 1 <= k < len(labels):
        raise ValueError(f"k must be in 1..{len(labels) - 1}, got {k}")
    e = embeddings.detach().float()
    dist = torch.cdist(e, e)
    dist.fill_diagonal_(float("inf"))                  # a query never retrieves itself
    nearest = dist.topk(k, dim=1, largest=False).indices
    hits = (labels[nearest] == labels[:, None]).any(dim=1)
    return float(hits.float().mean() * 100)


def embeddings(model: nn.Module, x: torch.Tensor, batch_size: int = 512,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, D) embeddings of ``x``: the input of the model's last ``nn.Linear`` (the classifier), eval mode,
    batched; the embedding a retrieval task's Recall@K is computed on."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no Linear classifier: no embedding to retrieve with")
    seen: list[torch.Tensor] = []
    handle = linears[-1].register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].detach().flatten(1).cpu()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                model(x[i:i + batch_size].to(device))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(seen)


def macs_from_flops(flops: int) -> int:
    """flop_counter counts one multiply-accumulate as 2 FLOPs."""
    return flops // 2


# --------------------------------------------------------------------------- latency
@dataclass
class LatencyStats:
    p50_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    n: int


def summarize(samples_ms: list[float]) -> LatencyStats:
    """p50/p90 by linear interpolation between order statistics; std is the sample std."""
    if not samples_ms:
        raise ValueError("no latency samples")
    s = sorted(samples_ms)

    def q(p: float) -> float:
        pos = (len(s) - 1) * p
        lo, hi = int(pos), min(int(pos) + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    std = statistics.stdev(s) if len(s) > 1 else 0.0
    return LatencyStats(q(0.5), q(0.9), statistics.fmean(s), std, len(s))


@torch.inference_mode()
def latency_pair_cpu(model: nn.Module, reference: nn.Module, example: torch.Tensor, warmup: int,
                     runs: int) -> tuple[LatencyStats, LatencyStats]:
    """Time ``model`` and ``reference`` side by side: alternating single calls, each call one sample.

    Alternation puts both under the same machine conditions (thermal state,
    background load); the speedup is the ratio of the two p50s.
    """
    model.eval()
    reference.eval()
    for _ in range(warmup):
        model(example)
        reference(example)
    a, b = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(example)
        t1 = time.perf_counter()
        reference(example)
        t2 = time.perf_counter()
        a.append((t1 - t0) * 1e3)
        b.append((t2 - t1) * 1e3)
    return summarize(a), summarize(b)


@torch.inference_mode()
def latency_cuda(model: nn.Module, example: torch.Tensor, warmup: int, runs: int) -> LatencyStats:
    """CUDA latency with CUDA events (one event pair per call)."""
    if not torch.cuda.is_available():
        raise RuntimeError("CUDA is not available")
    model = model.eval().cuda()
    example = example.cuda()
    for _ in range(warmup):
        model(example)
    torch.cuda.synchronize()
    samples = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        model(example)
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return summarize(samples)


def matmul_gflops(n: int = 512, repeats: int = 10) -> float:
    """Achieved fp32 GFLOP/s of a plain n x n matmul on this CPU (2 n^3 FLOPs per product)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    dt = time.perf_counter() - t0
    return 2 * n ** 3 * repeats / dt / 1e9


# --------------------------------------------------------------------------- environment
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_mem_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


