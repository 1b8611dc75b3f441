"""Uniform quantizers shared by the low-bit quantization papers (affine or symmetric, per tensor or channel).

Krishnamoorthi (2018), Section 2: a weight ``w`` becomes the integer code
``q = clamp(round(w / scale) + zero, qmin, qmax)`` and is used as ``(q - zero) * scale``.
``Scheme`` fixes the bit-width, symmetric/asymmetric and the granularity; ``qparams`` computes
scale and zero point from the weights' range; ``fake_quant`` is the straight-through rounding used
in training. A quantized layer keeps ordinary float kernels (simulated compute); ``encoded_format``
stores the integer codes bit-packed plus a float32 scale and zero point per channel, and decodes
to the identical float weights, so the stored bytes reflect the bit-width.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from mcbench.methods.encoding import container
from mcbench.methods.protocols import EncodedModel

QUANT_LAYERS = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class Scheme:
    bits: int = 8
    symmetric: bool = False
    per_channel: bool = True

    @property
    def qmin(self) -> int:
        return 0

    @property
    def qmax(self) -> int:
        return (1 << self.bits) - 1

    @property
    def name(self) -> str:
        return f"{'per-channel' if self.per_channel else 'per-tensor'} {'symmetric' if self.symmetric else 'asymmetric'} {self.bits}-bit"


def _reduce(w: torch.Tensor, per_channel: bool, fn) -> torch.Tensor:
    """``fn`` (amin/amax) over every dim but the first (per channel), or over all; shaped to broadcast."""
    if per_channel:
        return fn(w.flatten(1), dim=1).view(-1, *([1] * (w.dim() - 1)))
    return fn(w.flatten()).view(*([1] * w.dim()))


@torch.no_grad()
def qparams(w: torch.Tensor, s: Scheme) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero) broadcastable to ``w``; codes are unsigned in ``[0, 2**bits - 1]``.

    Asymmetric (Section 2.1): the range [min(w, 0), max(w, 0)] maps onto the codes, ``zero`` an
    integer so that 0.0 is exact. Symmetric (Section 2.2): ``scale = max|w| / (2**(b-1) - 1)``,
    ``zero = 2**(b-1)`` (a signed code shifted to unsigned storage).
    """
    if s.symmetric:
        half = 1 << (s.bits - 1)
        amax = _reduce(w.abs(), s.per_channel, torch.amax)
        scale = amax / (half - 1) if s.bits > 1 else amax
        zero = torch.full_like(scale, float(half))
    else:
        lo = _reduce(w, s.per_channel, torch.amin).clamp(max=0.0)
        hi = _reduce(w, s.per_channel, torch.amax).clamp(min=0.0)
        scale = (hi - lo) / (s.qmax - s.qmin)
        zero = (s.qmin - lo / torch.where(scale > 0, scale, torch.ones_like(scale))).round().clamp(s.qmin, s.qmax)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return scale.float(), zero.float()


def codes(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, s: Scheme) -> torch.Tensor:
    return (torch.round(w / scale) + zero).clamp(s.qmin, s.qmax)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """The float value of code ``q``; the one formula used by training, conversion and decoding."""
    return (q - zero) * scale


def quantize(w: torch.Tensor, s: Scheme) -> torch.Tensor:
    scale, zero = qparams(w, s)
    return dequantize(codes(w, scale, zero, s), scale, zero)


class _StraightThrough(torch.autograd.Function):
    """Forward: the given quantized value exactly; backward: the gradient passed to ``x`` unchanged."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return q

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def straight_through(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return _StraightThrough.apply(x, q.detach())


def fake_quant(w: torch.Tensor, s: Scheme) -> torch.Tensor:
    """Quantized value forward, identity gradient (straight-through estimator, Section 3)."""
    return straight_through(w, quantize(w.detach(), s))


class WeightFakeQuant(nn.Module):
    """A ``torch.nn.utils.parametrize`` parametrization: the layer trains through ``fake_quant``."""

    def __init__(self, scheme: Scheme):
        super().__init__()
        self.scheme = scheme

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quant(w, self.scheme)


class ActQuant(nn.Module):
    """Per-tensor asymmetric activation fake-quant with an observed range (Section 2.4, 3.1).

    Training mode: the range follows an exponential moving average of batch min/max
    (``momentum``); eval mode: the stored range is fixed. ``calibrating`` makes eval-mode
    forwards widen the range to the running min/max instead (post-training calibration).
    """

    def __init__(self, bits: int = 8, momentum: float = 0.99):
        super().__init__()
        self.bits, self.momentum, self.calibrating = bits, momentum, False
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("seen", torch.tensor(0.0))

    @torch.no_grad()
    def _observe(self, x: torch.Tensor, ema: bool) -> None:
        lo, hi = x.min().clamp(max=0.0), x.max().clamp(min=0.0)
        if self.seen == 0:
            self.lo.copy_(lo), self.hi.copy_(hi)
        elif ema:
            self.lo.mul_(self.momentum).add_((1 - self.momentum) * lo)
            self.hi.mul_(self.momentum).add_((1 - self.momentum) * hi)
        else:
            self.lo.copy_(torch.minimum(self.lo, lo)), self.hi.copy_(torch.maximum(self.hi, hi))
        self.seen += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.calibrating:
            self._observe(x, ema=self.training)
        qmax = (1 << self.bits) - 1
        scale = ((self.hi - self.lo) / qmax).clamp(min=1e-8)
        zero = torch.round(-self.lo / scale).clamp(0, qmax)
        q = (torch.round(x / scale) + zero).clamp(0, qmax)
        y = (q - zero) * scale
        return straight_through(x, y) if torch.is_grad_enabled() and x.requires_grad else y


def fold_bn(model: nn.Module) -> nn.Module:
    """BN folded into the preceding conv/linear (the quantized weights are the folded ones, Section 3.2)."""
    from torch.fx.experimental.optimization import fuse
    return fuse(copy.deepcopy(model).eval())


def insert_act_quant(model: nn.Module, bits: int) -> nn.Module:
    """Each ReLU becomes ReLU followed by ``ActQuant(bits)`` (module replaced in place, fx graphs included)."""
    modules = dict(model.named_modules())
    for name, m in list(modules.items()):
        if isinstance(m, nn.ReLU):
            parent_name, _, child = name.rpartition(".")
            setattr(modules[parent_name] if parent_name else model, child, nn.Sequential(nn.ReLU(), ActQuant(bits)))
    return model


def quant_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QUANT_LAYERS)]


QPARAMS_ATTR = "_mcbench_qparams"   # (scale, zero) of a snapped layer; read by the encoder


@torch.no_grad()
def snap_weights(model: nn.Module, s: Scheme, skip: tuple[str, ...] = ()) -> nn.Module:
    """Every weight layer's weight replaced by its quantized value (plain float parameters).

    The layer keeps its (scale, zero) as a plain attribute: the quantized weights alone do not
    determine them (the range is nudged so that zero is exact), and the encoder stores them.
    """
    for name, m in quant_layers(model):
        if name not in skip:
            scale, zero = qparams(m.weight, s)
            m.weight.copy_(dequantize(codes(m.weight, scale, zero, s), scale, zero))
            setattr(m, QPARAMS_ATTR, (scale.cpu(), zero.cpu()))
    return model


# --------------------------------------------------------------------------- encoded format
def _to_codes(state: dict[str, torch.Tensor], layers: dict[str, nn.Module], s: Scheme) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        layer = k[: -len(".weight")] if k.endswith(".weight") else None
        if layer in layers:
            if not hasattr(layers[layer], QPARAMS_ATTR):
                raise ValueError(f"{k} is not on the {s.name} grid; quantize (snap_weights) before encoding")
            scale, zero = getattr(layers[layer], QPARAMS_ATTR)
            q = codes(v, scale, zero, s)
            if not torch.equal(dequantize(q, scale, zero), v):
                raise ValueError(f"{k} is not on the {s.name} grid; quantize before encoding")
            out[f"{layer}.wcodes"] = q.to(torch.uint8)
            out[f"{layer}.wscale"], out[f"{layer}.wzero"] = scale.flatten(), zero.flatten()
        else:
            out[k] = v
    return out


def _from_codes(state: dict[str, torch.Tensor], like: dict[str, torch.Tensor]) -> dict:
    out = {}
    for k, v in state.items():
        if k.endswith(".wcodes"):
            layer = k[: -len(".wcodes")]
            shape = like[f"{layer}.weight"].shape
            bshape = (-1, *([1] * (len(shape) - 1)))
            scale, zero = state[f"{layer}.wscale"].view(bshape), state[f"{layer}.wzero"].view(bshape)
            out[f"{layer}.weight"] = dequantize(v.float(), scale, zero)
        elif not k.endswith((".wscale", ".wzero")):
            out[k] = v
    return out


def encoded_format(build: Callable[[], nn.Module], s: Scheme, skip: tuple[str, ...] = ()) -> EncodedModel:
    """Codes bit-packed at ``s.bits`` (codebook of the codes), scale and zero point float32 per channel."""

    def layers_of(model: nn.Module) -> dict[str, nn.Module]:
        return {n: m for n, m in quant_layers(model) if n not in skip}

    def encode(model: nn.Module) -> bytes:
        state = _to_codes(model.state_dict(), layers_of(model), s)
        plan = {k: container.Codebook(s.bits) for k in state if k.endswith(".wcodes")}
        return container.encode_state(state, plan)

    def decode(data: bytes) -> nn.Module:
        model = build()
        decoded = container.decode_state(data)
        model.load_state_dict(_from_codes(decoded, model.state_dict()), strict=True)
        for name, m in layers_of(model).items():   # the decoded model encodes again
            shape = (-1, *([1] * (m.weight.dim() - 1)))
            setattr(m, QPARAMS_ATTR, (decoded[f"{name}.wscale"].view(shape), decoded[f"{name}.wzero"].view(shape)))
        return model.eval()

    return EncodedModel(encode, decode, format=f"{s.name} codes bit-packed + float32 scale/zero per "
                                               f"{'channel' if s.per_channel else 'tensor'}")


@torch.no_grad()
def calibrate_ranges(model: nn.Module, batches: list[torch.Tensor], kinds: tuple[type, ...] = ()) -> nn.Module:
    """Activation ranges = running min/max over calibration batches (training inputs only).

    Every module of a type in ``kinds`` (default: :class:`ActQuant`) records its range while
    ``calibrating`` is set; the model is left in eval mode.
    """
    acts = [m for m in model.modules() if isinstance(m, kinds or (ActQuant,))]
    model.eval()
    for a in acts:
        a.calibrating = True
    device = next(model.parameters()).device
    for x in batches:
        model(x.to(device))
    for a in acts:
        a.calibrating = False
    return model
