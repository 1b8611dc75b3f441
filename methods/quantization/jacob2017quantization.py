"""Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference.

Jacob, Kligys, Chen, Zhu, Tang, Howard, Adam, Kalenichenko (2017), arXiv:1712.05877 (CVPR 2018).
Key: jacob2017quantization.
Implements quantization-aware training (Section 3) and conversion to integer inference (Section 2):
    r = S (q - Z)                                   (Eq. 1, affine quantization)
    q = clamp(round(r / S) + Z, q_min, q_max)       simulated in training by fake-quant nodes
    weights int8 (per-channel symmetric), activations uint8 (per-tensor affine);
    batch norm folded into conv weights during training (Section 3.2); after ``freeze_fraction`` of
    the fine-tuning steps BN statistics and observers are frozen, as Section 3.2 recommends.
Real: the converted model runs int8 kernels (torch.ao quantized Conv/Linear, engine recorded).
Simulated: nothing at inference; training uses fake-quant.
Deviations: starts from the trained fp32 baseline and fine-tunes (the paper trains from a float
checkpoint too); uses PyTorch's x86 (fbgemm) backend, not the paper's gemmlowp ARM kernels.
API note: torch.ao.quantization's FX flow is deprecated in favour of torchao's pt2e flow, which on CPU
needs torch.compile/inductor to reach int8 kernels; with torch pinned to 2.14.1 the FX flow still
ships and gives eager int8 kernels. Migrating to torchao pt2e is listed under "Known limitations" in README.md.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field
import torch
from torch import nn

from mcbench.methods.protocols import Compressed, MethodContext, QuantizationMethod, TrainHooks
from mcbench.methods.registry import register


def _quantize_fx():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        from torch.ao.quantization import get_default_qat_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_qat_fx
    return get_default_qat_qconfig_mapping, prepare_qat_fx, convert_fx


@register(family="quantization")
class jacob2017quantization(QuantizationMethod):
    from_scratch = False

    @dataclass
    class Config:
        engine: Literal["x86", "fbgemm", "onednn", "qnnpack"] = "x86"   # torch.backends.quantized.engine
        freeze_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5  # freeze BN stats and observers after
                                                                        # this fraction of steps

    def _set_engine(self) -> None:
        if self.config.engine not in torch.backends.quantized.supported_engines:
            raise ValueError(f"quantized engine {self.config.engine!r} not supported here "
                             f"(supported: {torch.backends.quantized.supported_engines})")
        torch.backends.quantized.engine = self.config.engine

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        self._set_engine()
        qconfig_mapping, prepare_qat_fx, _ = _quantize_fx()
        model = copy.deepcopy(model).train()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return prepare_qat_fx(model, qconfig_mapping(self.config.engine), (ctx.example_input(2).cpu(),))

    def hooks(self, ctx: MethodContext) -> TrainHooks:
        frozen = {"done": False}

        def after_step(model: nn.Module, step: int, total: int) -> None:
            if not frozen["done"] and step >= self.config.freeze_fraction * total:
                model.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)
                model.apply(torch.ao.quantization.disable_observer)
                frozen["done"] = True

        return TrainHooks(after_step=after_step)

    def convert(self, model: nn.Module, ctx: MethodContext) -> Compressed:
        self._set_engine()
        _, _, convert_fx = _quantize_fx()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = convert_fx(copy.deepcopy(model).cpu().eval())
        return Compressed(q, real=True, note=f"int8 kernels (torch.ao FX, {self.config.engine} engine)",
                          bits_per_weight=8.0, quant_engine=self.config.engine,
                          macs_model=copy.deepcopy(model).cpu().eval())  # flop_counter cannot see int8 ops
