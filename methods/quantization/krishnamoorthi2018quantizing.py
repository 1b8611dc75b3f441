"""Quantizing deep convolutional networks for efficient inference: A whitepaper.

Krishnamoorthi (2018), arXiv:1806.08342. Key: krishnamoorthi2018quantizing.
Implements the whitepaper's uniform quantizers and its two recipes:
    asymmetric (Section 2.1, Eq. 1-3): q = clamp(round(w / s) + z, 0, 2^b - 1), w_q = (q - z) s,
        s = (max(w, 0) - min(w, 0)) / (2^b - 1), z = round(-min(w, 0) / s)
    symmetric (Section 2.2): z = 2^(b-1), s = max|w| / (2^(b-1) - 1)
    granularity (Section 2.3): one (s, z) per tensor or per output channel
    post-training quantization (Section 3.1): BN folded (Section 3.2), weights quantized, activations
        per-tensor asymmetric with ranges from calibration batches (training data)
    quantization-aware training (Section 3.2): fake-quant weights with the straight-through estimator
        (Eq. 7), activation ranges from an exponential moving average of batch min/max, fine-tuned from
        the trained float model.
The row is QAT at ``weight_bits`` with the configured scheme; ``ptq_controls`` adds the PTQ comparison of
the whitepaper's Tables 2-4 as control rows (``granularity``: per-tensor and per-channel, asymmetric;
``grid``: both granularities x symmetric/asymmetric; ``none``).
Real: storage. The encoded file holds the integer codes bit-packed at ``weight_bits`` plus float32 scale
and zero point per channel (or tensor); it decodes to the identical weights.
Simulated: compute. Weights are held as float32 on float kernels and activations are fake-quantized
(rounded to ``act_bits`` levels in float); real 8-bit kernels are jacob2017quantization's row.
Deviations: BN is folded with the trained model's statistics before fine-tuning and stays frozen (the
paper folds BN during QAT and freezes its statistics after a while); AdamW + cosine schedule of the
harness; the task CNN instead of the paper's ImageNet networks; no TFLite/ARM timings.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from mcbench.methods.quantization import _uniform as U
from mcbench.methods.protocols import Compressed, MethodContext, QuantizationMethod
from mcbench.methods.registry import register




def ptq(folded: nn.Module, scheme: U.Scheme, act_bits: int, batches: list[torch.Tensor]) -> nn.Module:
    """Post-training quantization of a BN-folded float model (Section 3.1)."""
    model = U.calibrate_ranges(U.insert_act_quant(copy.deepcopy(folded), act_bits), batches)
    return U.snap_weights(model, scheme).eval()


def qat(ctx: MethodContext, folded: nn.Module, scheme: U.Scheme, act_bits: int, batches: list[torch.Tensor]):
    """Quantization-aware fine-tuning (Section 3.2); returns (quantized model, train report)."""
    model = U.calibrate_ranges(U.insert_act_quant(copy.deepcopy(folded), act_bits), batches)
    for _, layer in U.quant_layers(model):
        parametrize.register_parametrization(layer, "weight", U.WeightFakeQuant(scheme))
    report = ctx.train_fn(model, epochs=ctx.epochs_finetune, stage="qat")
    for _, layer in U.quant_layers(model):
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
    return U.snap_weights(model, scheme).eval(), report


@register(family="quantization")
class krishnamoorthi2018quantizing(QuantizationMethod):
    from_scratch = False

    @dataclass
    class Config:
        weight_bits: Annotated[int, Field(ge=2, le=8)] = 4
        act_bits: Annotated[int, Field(ge=2, le=8)] = 8
        per_channel: bool = True           # Section 2.3: per-channel weights are the recommendation
        symmetric: bool = False
        ptq_controls: Literal["none", "granularity", "grid"] = "granularity"
        calibration_batches: Annotated[int, Field(ge=1, le=100)] = 10

    def scheme(self, per_channel: bool | None = None, symmetric: bool | None = None) -> U.Scheme:
        c = self.config
        return U.Scheme(c.weight_bits, c.symmetric if symmetric is None else symmetric,
                        c.per_channel if per_channel is None else per_channel)

    def _compressed(self, model: nn.Module, ctx: MethodContext, scheme: U.Scheme, how: str, report=None) -> Compressed:
        act_bits = self.config.act_bits
        build = lambda: U.insert_act_quant(U.fold_bn(ctx.build_baseline()), act_bits)  # noqa: E731
        return Compressed(
            model, real=False, storage_real=True, compute_real=False, train_report=report,
            encoded=U.encoded_format(build, scheme), bits_per_weight=float(scheme.bits),
            note=f"{how}, {scheme.name} weights, {act_bits}-bit per-tensor activations: storage real "
                 f"(codes bit-packed in the encoded file); compute simulated (float kernels, fake-quant activations)",
            extra={"activation_bits": act_bits, "weight_scheme": scheme.name, "recipe": how})

    def _control_schemes(self) -> dict[str, U.Scheme]:
        mode = self.config.ptq_controls
        if mode == "none":
            return {}
        syms = (False, True) if mode == "grid" else (self.config.symmetric,)
        out = {}
        for sym in syms:
            for pc in (False, True):
                name = f"ptq-{'per-channel' if pc else 'per-tensor'}" + (f"-{'sym' if sym else 'asym'}" if mode == "grid" else "")
                out[name] = self.scheme(per_channel=pc, symmetric=sym)
        return out

    def apply(self, ctx: MethodContext) -> Compressed:
        folded = U.fold_bn(ctx.load_baseline()).to(ctx.device)
        batches = ctx.calibration_batches(self.config.calibration_batches)
        model, report = qat(ctx, folded, self.scheme(), self.config.act_bits, batches)
        out = self._compressed(model, ctx, self.scheme(), "quantization-aware training", report)
        for name, scheme in self._control_schemes().items():
            out.controls[name] = self._compressed(ptq(folded, scheme, self.config.act_bits, batches), ctx, scheme,
                                                  "post-training quantization")
        return out
