"""AdderNet: Do We Really Need Multiplications in Deep Learning?

Chen, Wang, Xu, Shi, Xu, Xu, Tian, Xu (2019), arXiv:1912.13200 (CVPR 2020). Key: chen2019addernet.
Implements the adder layer and its training rules:
    Y(m, n, t) = - sum_i sum_j sum_k |X(m+i, n+j, k) - F(i, j, k, t)|        (Eq. 2, negative L1 distance)
    dY/dF = X - F                                     (Eq. 5: the full-precision gradient, not sign(X - F))
    dY/dX = HT(F - X), HT(x) = x if |x| <= 1, else sign(x)                 (Eq. 7: clipped, HardTanh)
    per-layer adaptive learning rate: grad_l <- eta sqrt(k) / ||grad_l||_2 * grad_l, k = numel(F_l)
                                                                                  (Eq. 10-11)
    Every convolution of the task network but the first becomes an adder layer followed by the same
    batch norm (Section 3.3); the first convolution and the classifier stay multiplicative, as in the
    paper's networks.
Real: the operator. The network computes adder layers (torch.cdist with p=1 over image patches): no
multiplications in them, and latency is measured on this operator as it runs. It is slower than a
convolution here: CPUs and BLAS libraries have fused multiply-add units and GEMM kernels, not L1
distance kernels, and the row's latency says so. Simulated: nothing; ``ops_json`` counts additions
(two per MAC: the difference and the accumulation) and the multiplications left in the first and last
layers.
Optimiser: SGD with momentum 0.9, weight decay 5e-4 and a cosine rate from 0.1 (Section 4.1), with eta = 0.1
(the paper's CIFAR setting); ``optimizer: adamw`` uses the harness's AdamW instead, which normalises each
gradient element and so undoes Eq. 11 (validation top-1 at the smoke budget: 14.9 % against SGD's 35.8 %).
Deviations: trained from scratch for the task's scratch epochs (the paper: 400 epochs on CIFAR-10).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.ops import nonzero_macs, tally
from mcbench.methods.protocols import (AccelerationMethod, Compressed, MethodContext, StepInfo, TrainHooks)
from mcbench.methods.registry import register


def adder_distance(x_cols: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(B, L, K) patches, (T, K) filters -> (B, L, T) negative L1 distances (forward of Eq. 2)."""
    return -torch.cdist(x_cols, w.unsqueeze(0).expand(x_cols.shape[0], -1, -1).contiguous(), p=1)


class AdderFunction(torch.autograd.Function):
    """Eq. 2 forward; Eq. 5 and 7 backward (computed in chunks of images to bound memory)."""

    @staticmethod
    def forward(ctx, x_cols: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x_cols, w)
        return adder_distance(x_cols, w)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x_cols, w = ctx.saved_tensors
        # Eq. 5: dY/dF = X - F, summed over images and positions: g^T X - F * sum(g)
        g_flat, x_flat = g.reshape(-1, g.shape[-1]), x_cols.reshape(-1, x_cols.shape[-1])
        grad_w = g_flat.t() @ x_flat - w * g_flat.sum(dim=0)[:, None]
        # Eq. 7: dY/dX = HT(F - X), per element (chunked over images)
        grad_x = torch.empty_like(x_cols)
        chunk = max(1, int(2 ** 24 // max(1, x_cols.shape[1] * w.numel())))
        for s in range(0, x_cols.shape[0], chunk):
            diff = (w[None, None] - x_cols[s:s + chunk, :, None, :]).clamp(-1.0, 1.0)   # (b, L, T, K)
            grad_x[s:s + chunk] = torch.einsum("blt,bltk->blk", g[s:s + chunk], diff)
        return grad_x, grad_w


class Adder2d(nn.Module):
    """A convolution's shape and hyperparameters with the negative L1 distance as its operator."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = False):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_normal_(self.weight)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        oh = (h + 2 * self.padding - self.kernel_size) // self.stride + 1
        ow = (w + 2 * self.padding - self.kernel_size) // self.stride + 1
        cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride).transpose(1, 2)  # (B, L, K)
        wflat = self.weight.flatten(1)
        y = AdderFunction.apply(cols, wflat) if torch.is_grad_enabled() else adder_distance(cols, wflat)
        y = y.transpose(1, 2).reshape(b, self.out_channels, oh, ow)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


def adder_model(model: nn.Module) -> nn.Module:
    """Every Conv2d but the first replaced by an ``Adder2d`` of the same shape."""
    model = copy.deepcopy(model)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    modules = dict(model.named_modules())
    for name in convs[1:]:
        conv = modules[name]
        if conv.groups != 1 or conv.dilation != (1, 1) or conv.kernel_size[0] != conv.kernel_size[1]:
            raise ValueError(f"adder_model: {name} is grouped, dilated or not square; not supported")
        parent, _, child = name.rpartition(".")
        setattr(modules[parent] if parent else model, child,
                Adder2d(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0], conv.padding[0],
                        conv.bias is not None))
    return model


def adaptive_lr(eta: float):
    """before_step hook: each adder layer's filter gradient scaled to eta sqrt(k) / ||g|| (Eq. 10-11)."""

    @torch.no_grad()
    def hook(model: nn.Module, info: StepInfo) -> None:
        for m in model.modules():
            if isinstance(m, Adder2d) and m.weight.grad is not None:
                norm = m.weight.grad.norm()
                if norm > 0:
                    m.weight.grad.mul_(eta * math.sqrt(m.weight.numel()) / norm)

    return hook


def adder_ops(layer: nn.Module, x: torch.Tensor, out: torch.Tensor) -> dict[str, float] | None:
    if isinstance(layer, Adder2d):
        k = layer.kernel_size
        macs = float(out.numel() * layer.in_channels * k * k)   # padded positions count: |0 - F| is computed
        return {"additions": 2.0 * macs, "multiplications": 0.0}
    counts = nonzero_macs(layer, x, inputs=False)
    if counts is None:
        return None
    return {"additions": counts["macs_dense"], "multiplications": counts["macs_dense"]}


@register(family="acceleration")
class chen2019addernet(AccelerationMethod):
    real = True
    note = ("adder layers (negative L1 distance, torch.cdist p=1) replace every convolution but the first: "
            "no multiplications in them; latency measured on this operator, which is slower than convolution "
            "on this CPU")

    @dataclass
    class Config:
        eta: Annotated[float, Field(gt=0.0, le=10.0)] = 0.1     # Eq. 11's hyperparameter
        # "sgd": the paper's optimiser (Section 4.1: momentum 0.9, weight decay 5e-4, cosine learning rate from
        # ``lr``), under which Eq. 11's per-layer scaling sets the adder filters' step size. "adamw": the
        # harness's optimiser and rate; Adam normalises every gradient element, which undoes Eq. 11's scaling.
        # Chosen on validation (fmnist smoke budget, seed 0: sgd 35.8 %, adamw 14.9 %).
        optimizer: Literal["sgd", "adamw"] = "sgd"
        lr: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1          # sgd only
        momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9    # sgd only
        weight_decay: Annotated[float, Field(ge=0.0, le=0.1)] = 5e-4   # sgd only

    def build(self, ctx: MethodContext) -> nn.Module:
        return adder_model(ctx.build_baseline())

    def apply(self, ctx: MethodContext) -> Compressed:
        model = self.build(ctx).to(ctx.device)
        c = self.config
        sgd = (lambda params: torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay))
        report = ctx.train_fn(model, epochs=ctx.epochs_scratch, hooks=TrainHooks(before_step=adaptive_lr(c.eta)),
                              optimizer=sgd if c.optimizer == "sgd" else None, stage="scratch")
        n_adder = sum(1 for m in model.modules() if isinstance(m, Adder2d))
        return Compressed(model.eval(), real=True, note=self.note, train_report=report,
                          count_ops=lambda m, x: tally(m, x, adder_ops),
                          extra={"adder_layers": n_adder, "eta": c.eta, "optimizer": c.optimizer})
