"""Model Compression via Distillation and Quantization.

Polino, Pascanu, Alistarh (ICLR 2018), arXiv:1802.05668. Key: polino2018model.
Implements quantized distillation (Section 2.1, Section 3, Algorithm 1) and differentiable
quantization (Section 4, Algorithm 2):
    Uniform quantization with scaling and bucketing (Section 2.1): the weights of a layer are
    cut into buckets of ``bucket_size`` consecutive values v; per bucket
        alpha = max v - min v,  beta = min v,  sc(v) = (v - beta) / alpha,
        Q(v) = alpha * round(sc(v) * s) / s + beta,  s = 2^b - 1  (2^b levels per bucket).
    Quantized distillation (Algorithm 1): full-precision shadow weights w; each step the student
    runs with Q(w), the gradient of the distillation loss with respect to Q(w) is applied to w
    (straight-through); the deployed student holds Q(w). The loss is hinton2015distilling's
        L = a CE(z_s, y) + (1 - a) T^2 KL(softmax(z_t / T) || softmax(z_s / T)).
    Differentiable quantization (Algorithm 2), the control row ``differentiable``: the trained
    full-precision student's weights stay fixed; per layer 2^b quantization points p are learned
    by gradient descent on the same distillation loss, Q(v, p) = p_{i(v)}, so that
    dL/dp_j = sum over the weights v mapped to p_j of dL/dQ(v).
    Controls: ``no-kd`` (the same bucketed b-bit student from scratch with cross-entropy only,
    the paper's "quantized without distillation") and ``differentiable``.
Real: storage. The encoded file holds the b-bit codes bit-packed plus float32 alpha and beta per
bucket (quantized distillation) or a float32 codebook of 2^b points plus b-bit indices per layer
(differentiable quantization); biases and BatchNorm stay float32. Simulated: compute (float
kernels on the dequantized weights); activations stay at 32 bits, as in the paper.
Deviations: rounding is deterministic (the paper's Q is stochastic rounding in expectation; it
reports deterministic rounding at deployment); every conv and linear weight is quantized, the
first and last included; one bit width for all layers (the paper's differentiable quantization
can also allocate bits per layer by gradient norm: not implemented); differentiable quantization
maps each weight to its nearest point, recomputed each step, with the points initialised at the
layer's uniform grid; the task's student architecture, not the paper's shallower networks.
AdamW + cosine (the harness recipe) instead of SGD.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from mcbench.methods.distillation.hinton2015distilling import kd_loss
from mcbench.methods.encoding import container
from mcbench.methods.flows.distill import compressed, distil, frozen
from mcbench.methods.protocols import Compressed, DistillationMethod, EncodedModel, MethodContext, ModelOutput
from mcbench.methods.registry import register

QUANTIZED = (nn.Conv2d, nn.Linear)


# ------------------------------------------------------------------ uniform bucketed quantization
def _buckets(w: torch.Tensor, bucket_size: int) -> torch.Tensor:
    """(n_buckets, bucket_size) view of ``w`` flattened, the last bucket padded with its last value."""
    flat = w.reshape(-1)
    pad = (-flat.numel()) % bucket_size
    if pad:
        flat = torch.cat([flat, flat[-1:].expand(pad)])
    return flat.view(-1, bucket_size)


def bucket_codes(w: torch.Tensor, bits: int, bucket_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer codes round(sc(v) * s) in [0, 2^b - 1] (shape of ``w``), alpha and beta per bucket."""
    b = _buckets(w, bucket_size)
    beta = b.min(1).values
    alpha = b.max(1).values - beta
    s = 2 ** bits - 1
    codes = torch.round((b - beta[:, None]) / alpha.clamp_min(1e-12)[:, None] * s)
    return codes.reshape(-1)[:w.numel()].view_as(w).to(torch.int64), alpha, beta


def dequantize(codes: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, bits: int, bucket_size: int) -> torch.Tensor:
    """alpha * codes / s + beta per bucket: the inverse of ``bucket_codes`` up to rounding."""
    s = 2 ** bits - 1
    b = _buckets(codes.to(alpha.dtype), bucket_size)
    return (b * (alpha[:, None] / s) + beta[:, None]).reshape(-1)[:codes.numel()].view(codes.shape)


def quantize_bucketed(w: torch.Tensor, bits: int, bucket_size: int) -> torch.Tensor:
    """Q(w): Section 2.1's scaled uniform quantization, per bucket (deterministic rounding)."""
    codes, alpha, beta = bucket_codes(w, bits, bucket_size)
    return dequantize(codes, alpha, beta, bits, bucket_size)


def quantize_fixed_point(w: torch.Tensor, bits: int, bucket_size: int, max_rounds: int = 20) -> torch.Tensor:
    """Q applied until Q(w) == w bit for bit (float rounding of alpha can move a level by an ulp):
    the deployed weights are then exactly what the decoder rebuilds from their own codes."""
    q = quantize_bucketed(w, bits, bucket_size)
    for _ in range(max_rounds):
        nxt = quantize_bucketed(q, bits, bucket_size)
        if torch.equal(nxt, q):
            return q
        q = nxt
    raise RuntimeError("bucketed quantization did not reach a fixed point")


class BucketedWeight(nn.Module):
    """Parametrization: the forward pass sees Q(w), the gradient reaches the float shadow w (Algorithm 1)."""

    def __init__(self, bits: int, bucket_size: int) -> None:
        super().__init__()
        self.bits, self.bucket_size = bits, bucket_size

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w + (quantize_bucketed(w, self.bits, self.bucket_size) - w).detach()


def quantized_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QUANTIZED)]


def make_bucketed(model: nn.Module, bits: int, bucket_size: int) -> nn.Module:
    for _, m in quantized_layers(model):
        parametrize.register_parametrization(m, "weight", BucketedWeight(bits, bucket_size))
    return model


def freeze_bucketed(model: nn.Module, bits: int, bucket_size: int) -> nn.Module:
    """Replace each shadow weight by Q(w) exactly as the decoder computes it (in place)."""
    for _, m in quantized_layers(model):
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
        with torch.no_grad():
            m.weight.copy_(quantize_fixed_point(m.weight, bits, bucket_size))
    return model


def bucketed_format(build, bits: int, bucket_size: int) -> EncodedModel:
    """b-bit codes bit-packed, float32 alpha and beta per bucket; every other tensor raw."""

    def encode(model: nn.Module) -> bytes:
        state = dict(model.state_dict())
        plan: dict[str, container.Codec] = {}
        for name, m in quantized_layers(model):
            codes, alpha, beta = bucket_codes(m.weight.detach().cpu(), bits, bucket_size)
            del state[f"{name}.weight"]
            state[f"{name}.wcodes"] = codes.to(torch.int32)
            state[f"{name}.walpha"], state[f"{name}.wbeta"] = alpha, beta
            plan[f"{name}.wcodes"] = container.Codebook(bits)
        return container.encode_state(state, plan)

    def decode(data: bytes) -> nn.Module:
        model = build()
        state = container.decode_state(data)
        for name, _ in quantized_layers(model):
            codes = state.pop(f"{name}.wcodes")
            state[f"{name}.weight"] = dequantize(codes, state.pop(f"{name}.walpha"), state.pop(f"{name}.wbeta"),
                                                 bits, bucket_size)
        model.load_state_dict(state, strict=True)
        return model.eval()

    return EncodedModel(encode, decode, format=f"{bits}-bit bucket codes bit-packed + float32 alpha/beta per "
                                               f"{bucket_size}-weight bucket")


def bucketed_bits_per_weight(model: nn.Module, bits: int, bucket_size: int) -> float:
    """Storage bits per parameter: b per quantized weight + 64 per bucket; 32 for the rest."""
    total = sum(p.numel() for p in model.parameters())
    q = sum(m.weight.numel() for _, m in quantized_layers(model))
    buckets = sum(-(-m.weight.numel() // bucket_size) for _, m in quantized_layers(model))
    return (q * bits + 64 * buckets + 32 * (total - q)) / total


# ------------------------------------------------------------------ differentiable quantization
class LearnedPoints(nn.Module):
    """Parametrization with 2^b learnable points p: Q(v, p) = p_{nearest(v)}, v fixed (Algorithm 2).

    The gradient reaches each point as the sum of dL/dQ(v) over the weights mapped to it; the
    weights themselves get no gradient (the caller freezes them).
    """

    def __init__(self, w: torch.Tensor, bits: int) -> None:
        super().__init__()
        lo, hi = w.min().item(), w.max().item()
        self.points = nn.Parameter(torch.linspace(lo, hi, 2 ** bits, dtype=w.dtype, device=w.device))

    def assignment(self, w: torch.Tensor) -> torch.Tensor:
        return (w.detach().reshape(-1, 1) - self.points.detach().view(1, -1)).abs().argmin(1).view(w.shape)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.points[self.assignment(w)]


def make_learned_points(model: nn.Module, bits: int) -> list[nn.Parameter]:
    """Attach LearnedPoints to every conv/linear weight; freeze all other parameters; return the points."""
    for p in model.parameters():
        p.requires_grad_(False)
    points = []
    for _, m in quantized_layers(model):
        lp = LearnedPoints(m.weight.detach(), bits)
        parametrize.register_parametrization(m, "weight", lp)
        points.append(lp.points)
    return points


def freeze_learned_points(model: nn.Module) -> nn.Module:
    for _, m in quantized_layers(model):
        if parametrize.is_parametrized(m, "weight"):
            with torch.no_grad():
                q = m.weight.detach().clone()
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
            with torch.no_grad():
                m.weight.copy_(q)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def codebook_format(build, bits: int) -> EncodedModel:
    def encode(model: nn.Module) -> bytes:
        plan = {f"{n}.weight": container.Codebook(bits) for n, _ in quantized_layers(model)}
        return container.encode_model(model, plan)

    return EncodedModel(encode, lambda data: container.decode_model(data, build),
                        format=f"float32 codebook of {2 ** bits} learned points + {bits}-bit indices per layer")


def codebook_bits_per_weight(model: nn.Module, bits: int) -> float:
    total = sum(p.numel() for p in model.parameters())
    q = sum(m.weight.numel() for _, m in quantized_layers(model))
    books = len(quantized_layers(model)) * 32 * 2 ** bits
    return (q * bits + books + 32 * (total - q)) / total


@register(family="distillation")
class polino2018model(DistillationMethod):
    @dataclass
    class Config:
        bits: Annotated[int, Field(ge=2, le=8)] = 4                 # b: 2^b levels per bucket (paper: 2-8)
        bucket_size: Annotated[int, Field(ge=2)] = 256              # k (paper: 256 for most CNN runs)
        temperature: Annotated[float, Field(gt=0)] = 4.0            # T of the distillation loss
        alpha: Annotated[float, Field(ge=0, le=1)] = 0.3            # weight of the hard-label term
        no_kd_control: bool = True                                  # the same quantized student without KD
        differentiable_control: bool = True                         # Algorithm 2 on the trained float student

    def _loss(self):
        c = self.config

        def loss(s: ModelOutput, y: torch.Tensor | None, t: ModelOutput | None) -> torch.Tensor:
            return kd_loss(s.logits, t.logits, y, c.temperature, c.alpha)

        return loss

    def _bucketed(self, ctx: MethodContext, model: nn.Module, report, note: str) -> Compressed:
        c = self.config
        model = freeze_bucketed(model, c.bits, c.bucket_size)
        out = compressed(model, report, note=note)
        out.real, out.storage_real, out.compute_real = False, True, False
        out.encoded = bucketed_format(ctx.build_student, c.bits, c.bucket_size)
        out.bits_per_weight = bucketed_bits_per_weight(model, c.bits, c.bucket_size)
        return out

    def _differentiable(self, ctx: MethodContext, teacher: nn.Module) -> Compressed:
        c = self.config
        student = ctx.load_student()
        points = make_learned_points(student, c.bits)
        report = distil(ctx, student, self._loss(), teacher=teacher, epochs=ctx.epochs_finetune,
                        stage="control:differentiable")   # the points are the only trainable parameters
        del points
        student = freeze_learned_points(student)
        out = compressed(student, report, note=f"differentiable quantization: {2 ** c.bits} learned points per layer "
                                               "on the trained float student's fixed weights (codebook + indices stored)")
        out.real, out.storage_real, out.compute_real = False, True, False
        out.encoded = codebook_format(ctx.build_student, c.bits)
        out.bits_per_weight = codebook_bits_per_weight(student, c.bits)
        return out

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        teacher = frozen(ctx.load_teacher())
        student = make_bucketed(ctx.build_student(), c.bits, c.bucket_size)
        report = distil(ctx, student, self._loss(), teacher=teacher, stage="quantized_distillation")
        out = self._bucketed(ctx, student, report, f"{c.bits}-bit bucketed weights (k = {c.bucket_size}) trained by "
                                                   "quantized distillation; codes bit-packed in the encoded file, "
                                                   "float kernels")
        out.extra.update(bits=c.bits, bucket_size=c.bucket_size)
        if c.no_kd_control:
            plain = make_bucketed(ctx.build_student(), c.bits, c.bucket_size)
            plain_report = ctx.train_fn(plain, epochs=ctx.epochs_scratch, stage="control:no-kd")
            out.controls["no-kd"] = self._bucketed(ctx, plain, plain_report, f"the same {c.bits}-bit bucketed "
                                                                             "student trained without distillation")
        if c.differentiable_control:
            out.controls["differentiable"] = self._differentiable(ctx, teacher)
        return out
