"""Sparse-kernel latency: an unstructured-sparse model's linear layers run on torch's CSR kernels.

Unstructured pruning leaves zeros in dense tensors; on dense kernels they cost as much as any other
weight ("no dense speedup"). Torch has one sparse kernel on CPU a deployed model can use: a sparse
CSR matrix times a dense matrix (``torch.nn.functional.linear`` or ``torch.addmm`` with a CSR
weight). It has no sparse convolution on CPU, so convolutions stay dense and the row says so.

``deploy_sparse`` builds the sparse deploy form of a scored fp32 model:

1. BN folded into the preceding conv/linear, as in the dense deploy form (``deploy.fold_batchnorm``).
2. Every ``nn.Linear`` (exact type: a subclass may transform its weight) whose weight density is at
   most ``MAX_DENSITY`` holds its weight as a CSR tensor (``CSRLinear``: ``addmm(b, W_csr, x^T)^T``);
   denser layers stay dense.
3. The form must reproduce the scored model's outputs (the dense deploy form's check,
   ``deploy.outputs_match``); if it does not, the dense model is returned and the path says why.

It runs eagerly, as one candidate. Measured here (torch 2.14.1, x86): ``F.linear`` with a CSR weight
raises under ``torch.inference_mode`` ("Cannot set version_counter for inference tensor"), and
``torch.jit.trace`` + ``freeze`` of a CSR model crashed the process or stalled, so neither is a
candidate. The harness times the form side by side with the model's dense deploy form
(``Harness.sparse_latency``), so ``speedup_vs_dense`` is a ratio from one run. The threshold is ours,
not a paper's: above half density the CSR indices cost more than the zeros they skip.
"""
from __future__ import annotations

import copy
import warnings
import torch
from torch import nn

from mcbench.benchmarks import deploy

MAX_DENSITY = 0.5                 # a Linear with at most this fraction of nonzero weights runs as CSR
CONV_NOTE = "convolutions dense: torch has no sparse convolution kernel on CPU"


class CSRLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` stored as a sparse CSR tensor (only its nonzeros and their indices)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            self.register_buffer("weight", linear.weight.detach().to_sparse_csr())
        bias = linear.bias.detach().clone() if linear.bias is not None else torch.zeros(linear.out_features)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias[:, None], self.weight, x.t()).t()   # (out, in) @ (in, batch)


def _density(w: torch.Tensor) -> float:
    return float(torch.count_nonzero(w)) / max(1, w.numel())


def sparse_linears(model: nn.Module, max_density: float = MAX_DENSITY) -> dict[str, float]:
    """``{name: weight density}`` of the ``nn.Linear`` layers (exact type) sparse enough to run as CSR."""
    return {name: round(_density(m.weight), 6) for name, m in model.named_modules()
            if type(m) is nn.Linear and _density(m.weight) <= max_density}


def sparse_convs(model: nn.Module) -> dict[str, float]:
    """``{name: weight density}`` of convolutions with zero weights (they stay on dense kernels)."""
    return {name: round(_density(m.weight), 6) for name, m in model.named_modules()
            if isinstance(m, nn.modules.conv._ConvNd) and _density(m.weight) < 1.0}


def to_csr(model: nn.Module, names: list[str]) -> nn.Module:
    """``model`` with the named Linear layers replaced by ``CSRLinear`` (in place; returns it)."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, CSRLinear(getattr(parent, child)))
    return model


def _folded(model: nn.Module) -> nn.Module:
    try:
        with torch.no_grad():
            return deploy.fold_batchnorm(model)
    except Exception:  # fx cannot trace every model; CSR layers do not need the fold
        return copy.deepcopy(model).eval()


def deploy_sparse(model: nn.Module, example: torch.Tensor, *, check_inputs: tuple[torch.Tensor, ...] = (),
                  max_density: float = MAX_DENSITY) -> deploy.DeployForm | None:
    """The checked CSR deploy form of ``model`` (the scored fp32 model, CPU; not modified), or None when no
    Linear layer is sparse enough. ``example`` and ``check_inputs`` are the inputs it must reproduce."""
    model = model.eval()
    names = list(sparse_linears(model, max_density))
    if not names:
        return None
    n_linear = sum(1 for m in model.modules() if type(m) is nn.Linear)
    try:
        with torch.no_grad():
            form = to_csr(_folded(model), names)
        with torch.inference_mode():
            for x in (example, *check_inputs):
                ok, why = deploy.outputs_match(form(x), model(x))
                if not ok:
                    raise ValueError(f"output mismatch: {why}")
    except Exception as e:  # the CSR form failed to build, run or match: time the dense model and say why
        why = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        return deploy.DeployForm(model, f"fp32 dense eager (CSR form failed: {why})", [why])
    return deploy.DeployForm(form, f"fp32 bn-folded csr-addmm({len(names)} of {n_linear} linear) eager")


__all__ = ["CSRLinear", "deploy_sparse", "sparse_linears", "sparse_convs", "to_csr", "MAX_DENSITY", "CONV_NOTE"]
