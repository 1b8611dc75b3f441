"""Hardware-Software Codesign of Accurate, Multiplier-free Deep Neural Networks.

Tann, Hashemi, Bahar, Reda (2017), arXiv:1705.04288 (DAC 2017). Key: tann2017hardware.
Implements the paper's two quantizations and its incremental fine-tuning:
    dynamic fixed point activations (Section 3.1): x_q = clamp(round(x 2^f), -2^(b-1), 2^(b-1) - 1) 2^-f,
        the fractional length f chosen per layer from the calibrated range so that max|x| fits in b bits;
    power-of-two weights (Section 3.2): w_q = sign(w) 2^e, e = round(log2|w|) clipped to the layer's
        2^(k-1) - 1 largest exponents (e_max = round(log2 max|w|)); smaller magnitudes become 0, so a
        k-bit code holds zero, the sign and the exponent, and every multiplication is a shift;
    incremental training (Section 3.3): the weight layers are quantized a group at a time, first to last;
    after each group the network is fine-tuned with the quantized layers trained through the quantizer
    (straight-through estimator) and the later layers still in float.
BN is folded into the weights first so that the deployed weights themselves are powers of two.
Real: storage (the encoded file holds each layer's k-bit codes bit-packed with a codebook of its
powers of two; biases float32). Simulated: compute. Weights +/-2^e are held in float32 and run on float
kernels; activations are rounded to fixed point in float. ``ops_json`` counts what the paper's hardware
does: one shift and one addition per nonzero-weight MAC of every quantized layer, no multiplications.
Deviations: exponents are rounded in the log domain; biases stay float32 (the paper's are fixed point);
the task CNN instead of the paper's CIFAR-10/ImageNet networks; no accelerator, power or energy figures.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from mcbench.methods.encoding import container
from mcbench.methods.ops import nonzero_macs, tally
from mcbench.methods.protocols import Compressed, EncodedModel, MethodContext, QuantizationMethod
from mcbench.methods.quantization import _uniform as U
from mcbench.methods.registry import register


def exponent_range(w: torch.Tensor, bits: int) -> tuple[int, int]:
    """(e_min, e_max) of a layer: e_max = round(log2 max|w|), 2**(bits-1) - 1 exponents in all."""
    amax = float(w.detach().abs().max())
    e_max = round(math.log2(amax)) if amax > 0 else 0
    return e_max - (2 ** (bits - 1) - 1) + 1, e_max


def power_of_two(w: torch.Tensor, bits: int, erange: tuple[int, int] | None = None) -> torch.Tensor:
    """sign(w) 2^round(log2|w|), exponents clipped to the range; below half the smallest power -> 0."""
    e_min, e_max = erange or exponent_range(w, bits)
    mag = w.abs()
    e = torch.round(torch.log2(mag.clamp(min=torch.finfo(w.dtype).tiny))).clamp(e_min, e_max)
    q = torch.sign(w) * torch.exp2(e)
    return torch.where(mag < 2.0 ** (e_min - 1), torch.zeros_like(w), q)


class PowerOfTwoSTE(nn.Module):
    """Parametrization: forward the power-of-two weight, gradient straight through."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return U.straight_through(w, power_of_two(w.detach(), self.bits))


class FixedPointAct(nn.Module):
    """Dynamic fixed point: ``bits`` signed bits, fractional length ``frac`` from the observed range."""

    def __init__(self, bits: int = 8):
        super().__init__()
        self.bits, self.calibrating = bits, False
        self.register_buffer("amax", torch.tensor(0.0))

    @property
    def frac(self) -> int:
        amax = float(self.amax)
        int_bits = math.ceil(math.log2(amax)) if amax > 0 else 0    # bits left of the radix point
        return self.bits - 1 - int_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.calibrating:
            with torch.no_grad():
                self.amax.copy_(torch.maximum(self.amax, x.detach().abs().max()))
        step = 2.0 ** -self.frac
        lim = 2 ** (self.bits - 1)
        y = torch.clamp(torch.round(x / step), -lim, lim - 1) * step
        return U.straight_through(x, y) if torch.is_grad_enabled() and x.requires_grad else y


def insert_fixed_point(model: nn.Module, bits: int) -> nn.Module:
    modules = dict(model.named_modules())
    for name, m in list(modules.items()):
        if isinstance(m, nn.ReLU):
            parent, _, child = name.rpartition(".")
            setattr(modules[parent] if parent else model, child, nn.Sequential(nn.ReLU(), FixedPointAct(bits)))
    return model




def stage_groups(n_layers: int, stages: int) -> list[list[int]]:
    """Layer indices quantized at each stage, first layers first; the last stage ends with all of them."""
    stages = max(1, min(stages, n_layers))
    bounds = [round(n_layers * (k + 1) / stages) for k in range(stages)]
    return [list(range(0 if k == 0 else bounds[k - 1], bounds[k])) for k in range(stages)]


def shift_ops(layer: nn.Module, x: torch.Tensor, out: torch.Tensor) -> dict[str, float] | None:
    counts = nonzero_macs(layer, x, inputs=False)
    if counts is None:
        return None
    n = counts["macs_nonzero_weights"]
    return {"shifts": n, "additions": n, "multiplications": 0.0}


@register(family="quantization")
class tann2017hardware(QuantizationMethod):
    from_scratch = False

    @dataclass
    class Config:
        weight_bits: Annotated[int, Field(ge=2, le=8)] = 4    # sign + zero + 2**(k-1) - 1 exponents
        act_bits: Annotated[int, Field(ge=4, le=16)] = 8      # dynamic fixed point
        stages: Annotated[int, Field(ge=1, le=8)] = 2         # incremental groups of layers
        calibration_batches: Annotated[int, Field(ge=1, le=100)] = 10

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        model = insert_fixed_point(U.fold_bn(ctx.load_baseline()).to(ctx.device), c.act_bits)
        U.calibrate_ranges(model, ctx.calibration_batches(c.calibration_batches), (FixedPointAct,))
        layers = [m for _, m in U.quant_layers(model)]
        groups = stage_groups(len(layers), c.stages)
        epochs = max(1, ctx.epochs_finetune // len(groups))
        report = None
        for k, group in enumerate(groups):
            for i in group:
                parametrize.register_parametrization(layers[i], "weight", PowerOfTwoSTE(c.weight_bits))
            report = ctx.train_fn(model, epochs=epochs, stage=f"incremental-{k + 1}")
        for layer in layers:
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        return self._compressed(model.eval(), ctx, report)

    def _compressed(self, model: nn.Module, ctx: MethodContext, report) -> Compressed:
        c = self.config
        build = lambda: insert_fixed_point(U.fold_bn(ctx.build_baseline()), c.act_bits)  # noqa: E731
        plan = lambda m: {f"{n}.weight": container.Codebook(c.weight_bits) for n, _ in U.quant_layers(m)}  # noqa: E731
        encoded = EncodedModel(encode=lambda m: container.encode_model(m, plan(m)),
                               decode=lambda b: container.decode_model(b, build),
                               format=f"{c.weight_bits}-bit codes of power-of-two weights (codebook per layer), "
                                      f"float32 biases and activation ranges")
        fracs = [a.frac for a in model.modules() if isinstance(a, FixedPointAct)]
        return Compressed(model, real=False, storage_real=True, compute_real=False, train_report=report,
                          encoded=encoded, bits_per_weight=float(c.weight_bits),
                          count_ops=lambda m, x: tally(m, x, shift_ops),
                          note=f"power-of-two weights ({c.weight_bits}-bit codes) and {c.act_bits}-bit dynamic fixed "
                               "point activations: storage real (encoded codes); compute simulated (float kernels; "
                               "ops_json counts the shifts the paper's hardware would do)",
                          extra={"activation_bits": c.act_bits, "activation_frac_bits": fracs,
                                 "stages": len(stage_groups(len(U.quant_layers(model)), c.stages))})
