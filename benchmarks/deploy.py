"""Deploy form: a model as a user would run it on this CPU, checked against the model that was scored.

Latency is only comparable when every model is timed in its best ordinary deployment form, not the
eager training graph. ``to_deploy_form`` builds candidates, checks each, and keeps the fastest:

fp32
    1. BN folded into the preceding conv/linear (``torch.fx.experimental.optimization.fuse``;
       exact-type matching, so a subclassed conv that transforms its weights, e.g. a binarized
       layer, is never folded).
    2. memory format: contiguous (NCHW) or channels_last (NHWC), whichever times faster; the
       channels_last candidate converts its input inside the timed call.
    3. ``torch.jit.trace`` + ``torch.jit.freeze``, with or without ``torch.jit.optimize_for_inference``
       (which on x86 prepacks oneDNN convolutions), whichever is faster; the BN-folded eager graph
       when no frozen form can be built.
int8 (a torch.ao converted model; conversion already folded BN and fused ReLU)
    timed as converted or traced + frozen, in either memory format, whichever is faster.

Every candidate must reproduce the scored model's outputs on the check inputs
(``torch.allclose`` with ``RTOL`` and ``ATOL_REL`` x max|output|); a candidate that fails to
build or to match is dropped and the reason kept. When none survives, the eager model itself is
timed and the path says why. The path string (e.g. ``"fp32 bn-folded channels_last jit-frozen"``)
goes on the result row.

``torch.compile`` was measured and is not a candidate: on the 2-core x86 machine (torch 2.14.1,
inductor with the system gcc, offline) compiling the 3-stage task CNN took ~26 s for a batch-64
p50 within noise of the jit-frozen channels_last form (9.9 vs 11.0 ms under load); one compile per
model and batch size would dominate a sweep's wall time.
"""
from __future__ import annotations

import copy
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

RTOL = 1e-4        # relative tolerance of the output check
ATOL_REL = 1e-4    # absolute tolerance, as a fraction of the reference output's largest magnitude

FORMATS = ("contiguous", "channels_last")
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
BN_OPS = ("aten::batch_norm", "aten::_batch_norm_impl_index", "aten::native_batch_norm")


@dataclass
class DeployForm:
    """The module to time, how it was made (``path``), and why other candidates were dropped."""

    module: Callable[[torch.Tensor], torch.Tensor]
    path: str
    dropped: list[str] = field(default_factory=list)
    bn_left: int = 0                  # BatchNorm modules / graph nodes still present in ``module``
    candidate_p50_ms: dict[str, float] = field(default_factory=dict)


class ChannelsLastInput(nn.Module):
    """Runs ``inner`` (weights already channels_last) on a channels_last copy of the input."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.contiguous(memory_format=torch.channels_last))


# --------------------------------------------------------------------------- inspection
def is_quantized(model: nn.Module) -> bool:
    """True for a torch.ao converted model (quantized modules or quantized tensors inside)."""
    for m in model.modules():
        if type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.nn.quantized")):
            return True
    return any(t.is_quantized for t in list(model.parameters()) + list(model.buffers()))


def count_batchnorm(module) -> int:
    """BatchNorm modules in an ``nn.Module`` plus batch-norm nodes in a TorchScript graph."""
    n = 0
    if isinstance(module, torch.jit.ScriptModule):
        graph = module.inlined_graph if hasattr(module, "inlined_graph") else module.graph
        n += sum(1 for node in graph.nodes() if node.kind() in BN_OPS)
        return n
    if isinstance(module, nn.Module):
        n += sum(1 for m in module.modules() if isinstance(m, BN_TYPES))
    return n


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval) with each BN that directly follows a conv/linear folded into it."""
    from torch.fx.experimental.optimization import fuse

    return fuse(copy.deepcopy(model).eval())


def outputs_match(out: torch.Tensor, ref: torch.Tensor) -> tuple[bool, str]:
    """The deploy form's outputs against the scored model's: shape, then allclose."""
    if out.shape != ref.shape:
        return False, f"shape {tuple(out.shape)} != {tuple(ref.shape)}"
    atol = ATOL_REL * max(1.0, float(ref.abs().max()))
    if torch.allclose(out, ref, rtol=RTOL, atol=atol):
        return True, ""
    return False, f"max |diff| {float((out - ref).abs().max()):.3g} > atol {atol:.3g} (rtol {RTOL})"


# --------------------------------------------------------------------------- candidates
def _with_format(model: nn.Module, fmt: str) -> nn.Module:
    if fmt == "contiguous":
        return model
    return ChannelsLastInput(copy.deepcopy(model).to(memory_format=torch.channels_last))


def _jit(model: nn.Module, example: torch.Tensor, optimize: bool) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        frozen = torch.jit.freeze(traced.eval())
        return torch.jit.optimize_for_inference(frozen) if optimize else frozen


def _candidates(base: nn.Module, example: torch.Tensor, quantized: bool):
    """(label, builder) pairs; builders run lazily so one failing candidate does not stop the others.

    fp32: frozen, with and without ``optimize_for_inference`` (the eager graph is only the fallback: frozen
    was never slower here). int8: as converted or frozen (``optimize_for_inference`` targets float convs).
    """
    formats = FORMATS if example.dim() == 4 else FORMATS[:1]
    for fmt in formats:
        if quantized:
            yield f"{fmt} eager", lambda fmt=fmt: _with_format(base, fmt)
        yield f"{fmt} jit-frozen", lambda fmt=fmt: _jit(_with_format(base, fmt), example, optimize=False)
        if not quantized:
            yield f"{fmt} jit-frozen-optimized", lambda fmt=fmt: _jit(_with_format(base, fmt), example, optimize=True)


def time_candidates(built: dict[str, Callable], example: torch.Tensor, warmup: int, runs: int) -> dict[str, float]:
    """p50 ms per candidate, calls interleaved round-robin so all see the same machine state.

    The warm-up must cover TorchScript's profiling executor, which re-optimises a frozen graph during
    its first calls: with 2 warm-up calls and 5 samples a fresh process sometimes kept a candidate
    17% slower than the best (fp32 b64 p50 6.0 vs 7.0 ms across 5 fresh processes).
    """
    samples: dict[str, list[float]] = {k: [] for k in built}
    for _ in range(warmup):
        for f in built.values():
            f(example)
    for _ in range(runs):
        for k, f in built.items():
            t0 = time.perf_counter()
            f(example)
            samples[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}


def deploy(model: nn.Module, example: torch.Tensor, *, check_inputs: tuple[torch.Tensor, ...] = (),
           quantized: bool | None = None, select_warmup: int = 5, select_runs: int = 10) -> DeployForm:
    """Build, check and time the deploy-form candidates of ``model`` at ``example``'s shape; keep the fastest.

    ``model`` is the model that was scored (on CPU); it is not modified. ``check_inputs`` are
    extra inputs (e.g. a validation batch) the deploy form must reproduce besides ``example``.
    """
    model = model.eval()
    quantized = is_quantized(model) if quantized is None else quantized
    kind = "int8" if quantized else "fp32"
    dropped: list[str] = []
    inputs = (example, *check_inputs)
    with torch.inference_mode():
        refs = [model(x) for x in inputs]

    base, fold = model, ""
    if not quantized:
        try:
            with torch.no_grad():
                base = fold_batchnorm(model)
        except Exception as e:  # fx cannot trace every model (data-dependent control flow)
            dropped.append(f"bn-fold: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}")
            base = model

    built: dict[str, Callable] = {}
    for label, make in _candidates(base, example, quantized):
        try:
            with torch.no_grad():
                cand = make()
            with torch.inference_mode():
                for x, ref in zip(inputs, refs):
                    ok, why = outputs_match(cand(x), ref)
                    if not ok:
                        raise ValueError(f"output mismatch: {why}")
            built[label] = cand
        except Exception as e:  # a candidate that fails to build, run or match is dropped with its reason
            dropped.append(f"{label}: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")

    if not built and not quantized:  # no frozen form: the BN-folded eager graph, if it matches
        try:
            with torch.inference_mode():
                for x, ref in zip(inputs, refs):
                    ok, why = outputs_match(base(x), ref)
                    if not ok:
                        raise ValueError(f"output mismatch: {why}")
            built["contiguous eager"] = base
        except Exception as e:
            dropped.append(f"contiguous eager: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
    if not built:
        return DeployForm(model, f"{kind} eager (fallback: no deploy candidate matched)", dropped,
                          count_batchnorm(model))
    with torch.inference_mode():
        p50 = time_candidates(built, example, select_warmup, select_runs) if len(built) > 1 else {k: float("nan") for k in built}
    best = min(p50, key=lambda k: p50[k]) if len(built) > 1 else next(iter(built))
    module = built[best]
    bn_left = count_batchnorm(module if isinstance(module, torch.jit.ScriptModule) else base)
    if quantized:
        fold = "as-converted" if best.endswith("eager") else ""
    else:
        fold = "bn-folded" if bn_left == 0 else f"bn-unfolded({bn_left})"
    fmt, how = best.split(" ", 1)
    words = [kind, fold, fmt, "" if how == "eager" else how]
    return DeployForm(module, " ".join(w for w in words if w), dropped, bn_left, p50)


def to_deploy_form(model: nn.Module, example: torch.Tensor, **kw) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """(deployed module, path description); see ``deploy`` for the keyword arguments."""
    form = deploy(model, example, **kw)
    return form.module, form.path


__all__ = ["DeployForm", "deploy", "to_deploy_form", "time_candidates", "fold_batchnorm", "count_batchnorm", "is_quantized",
           "outputs_match", "RTOL", "ATOL_REL"]
