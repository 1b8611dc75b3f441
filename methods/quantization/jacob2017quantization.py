"""Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference.

Jacob, Kligys, Chen, Zhu, Tang, Howard, Adam, Kalenichenko (2017), arXiv:1712.05877 (CVPR 2018).
Key: jacob2017quantization.
Implements quantization-aware training (Section 3) and conversion to integer inference (Section 2):
    r = S (q - Z)                                   (Eq. 1, affine quantization)
    q = clamp(round(r / S) + Z, q_min, q_max)       simulated in training by fake-quant nodes
    weights int8 (per-channel symmetric), activations unsigned per-tensor affine with a 7-bit range
    0..127 (``activation_reduce_range=True``, recorded in the row's extra as ``activation_bits``);
    batch norm folded into conv weights during training (Section 3.2); after ``freeze_fraction`` of
    the fine-tuning steps BN statistics and observers are frozen, as Section 3.2 recommends;
    observers only observe training batches (validation passes in eval mode never move a scale).
Real: the converted model runs int8 kernels (torch.ao quantized Conv/Linear, engine recorded).
Simulated: nothing at inference; training uses fake-quant.
Deviations: activations use 7 bits (0..127), not the paper's full uint8 range: x86 (fbgemm) kernels
accumulate uint8 x int8 pairs in int16 and saturate at full range, so the int8 model would not compute
what the fake-quant model trained (measured on digits: mean |logit difference| 0.34 at 0..255 vs 0.03 at
0..127); ``activation_reduce_range=False`` gives the paper's 0..255 for engines without that limit. Starts from the trained fp32 baseline and fine-tunes (the paper trains from a float
checkpoint too); uses PyTorch's oneDNN int8 kernels, not the paper's gemmlowp ARM kernels.
Engine: ``onednn`` by default. On the 2-core AVX2 machine without VNNI (AMD EPYC, torch 2.14.1) the
task CNN's int8 convolutions took 3.5 ms at batch 64 under oneDNN and 6.1 ms under the ``x86``
engine (which dispatched to fbgemm): int8 vs deploy-form fp32 1.80x vs 1.17x (batch 1: 1.48x vs
1.60x). ``engine: x86`` (or fbgemm) remains a config value; the engine is on the row.
API note: torch.ao.quantization's FX flow is deprecated in favour of torchao's pt2e flow, which on CPU
needs torch.compile/inductor to reach int8 kernels; with torch pinned to 2.14.1 the FX flow still
ships and gives eager int8 kernels. Migrating to torchao pt2e is listed under "Known limitations" in README.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field
from torch import nn

from mcbench.methods.flows import quantize
from mcbench.methods.protocols import Compressed, MethodContext, QuantizationMethod, TrainHooks
from mcbench.methods.registry import register


@register(family="quantization")
class jacob2017quantization(QuantizationMethod):
    from_scratch = False

    @dataclass
    class Config:
        engine: Literal["x86", "fbgemm", "onednn", "qnnpack"] = "onednn"  # torch.backends.quantized.engine
        freeze_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5  # freeze BN stats and observers after
                                                                        # this fraction of steps
        activation_reduce_range: bool = True   # activations 0..127 (7 bits); False: 0..255 (see Deviations)

    @property
    def act(self) -> quantize.ActivationRange:
        return quantize.ActivationRange(reduce_range=self.config.activation_reduce_range)

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        return quantize.prepare_qat(model, ctx, engine=self.config.engine, act=self.act)

    def hooks(self, ctx: MethodContext) -> TrainHooks:
        return quantize.freeze_schedule(self.config.freeze_fraction)

    def convert(self, model: nn.Module, ctx: MethodContext) -> Compressed:
        q = quantize.convert_int8(model, engine=self.config.engine)
        bits = self.act.bits
        return Compressed(q, real=True,
                          note=f"int8 weights, {bits}-bit activations (0..{self.act.quant_max}) on int8 kernels "
                               f"(torch.ao FX, {self.config.engine} engine)",
                          bits_per_weight=8.0, quant_engine=self.config.engine,
                          macs_model=quantize.float_twin(model),  # flop_counter cannot see int8 ops
                          extra={"activation_bits": bits, "activation_range": [0, self.act.quant_max]})
