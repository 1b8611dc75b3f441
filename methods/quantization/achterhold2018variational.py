"""Variational Network Quantization.

Achterhold, Koehler, Schmeink, Genewein (2018), ICLR 2018 (OpenReview ry-TW-WAb). Key: achterhold2018variational.
Implements VNQ with a ternary codebook {-r, 0, +r} per layer:
    posterior q(w) = N(theta, sigma^2) per weight, trained by the local reparameterization trick
        (pre-activations sampled from N(x theta, x^2 sigma^2));
    multi-modal log-uniform ("quantizing") prior with modes at the codebook levels; the KL of each weight
        is approximated at its nearest mode mu with the differentiable approximation of Molchanov et al.:
        -KL ~ k1 sigmoid(k2 + k3 log a) - 0.5 log(1 + 1/a) - k1,  a = sigma^2 / (theta - mu)^2,
        k1, k2, k3 = 0.63576, 1.87320, 1.48695 (Section 3);
    objective: cross-entropy + beta * KL / N (the negative ELBO per training sample, beta warmed up);
    at the end, weights whose posterior dropout rate log(sigma^2 / theta^2) exceeds ``log_alpha_prune``
        are pruned to 0 and every other weight snaps to its nearest level: at most three distinct values
        per layer, no fine-tuning afterwards (Section 4).
Real: storage. The encoded file holds each layer's 2-bit codes bit-packed with its 3-entry codebook.
Simulated: compute (ternary values held as float32 on float kernels).
Deviations: r is one trainable value per layer, initialised to the mean |w| of the larger half of the
pretrained weights and trained through the KL term (how the paper sets r is not reproduced exactly);
N is the training-set size the method is told (``train_size``); BN kept unfolded in float32 (its layers
are not quantized in the paper either); fine-tuned from the trained baseline with AdamW.
beta = 100, not the ELBO's 1: our schedules are one to two epochs, about 50-100x fewer steps than the
paper's, and at beta = 1 the weights stay away from the modes, so the final snap destroys the network
(measured on Fashion-MNIST validation, task CNN 20-50, one epoch on 20,000 images: 9.7 % after the snap
at beta = 1, the first layer ternary; beta = 100 and 1000 bring the other layers' median distance to
their mode below 0.01 r). The first convolution stays float32 by default (``quantize_first_layer``), as
in the paper's DenseNet experiment (Table 2); the paper's LeNet-5 ternarises it too. In the same probe
the snapped first layer alone took validation accuracy from 63.9 % (first layer float) to 18.2 %: its
few weights (one input channel) are pulled by the data more than by the prior in so short a schedule.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.encoding import container
from mcbench.methods.protocols import (Compressed, EncodedModel, MethodContext, ModelOutput, QuantizationMethod,
                                       StepInfo, TrainHooks)
from mcbench.methods.registry import register

K1, K2, K3 = 0.63576, 1.87320, 1.48695


def levels(r: torch.Tensor) -> torch.Tensor:
    return torch.stack([-r, torch.zeros_like(r), r])


def neg_kl_nearest_mode(theta: torch.Tensor, log_sigma2: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Molchanov's -KL approximation at each weight's nearest codebook level (summed over weights)."""
    mu = levels(r)
    nearest = mu[(theta.detach().unsqueeze(-1) - mu).abs().argmin(dim=-1)]
    log_alpha = log_sigma2 - torch.log((theta - nearest) ** 2 + 1e-8)
    return (K1 * torch.sigmoid(K2 + K3 * log_alpha) - 0.5 * F.softplus(-log_alpha) - K1).sum()


class VariationalLayer(nn.Module):
    """A Conv2d or Linear with a Gaussian posterior per weight and a ternary codebook (+/- r, 0)."""

    def __init__(self, layer: nn.Module, init_log_sigma2: float):
        super().__init__()
        self.layer = layer
        w = layer.weight.detach()
        self.log_sigma2 = nn.Parameter(torch.full_like(w, init_log_sigma2))
        mags = w.abs().flatten().sort().values
        self.r = nn.Parameter(mags[len(mags) // 2:].mean().reshape(()))

    def _op(self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self.layer, nn.Conv2d):
            return self.layer._conv_forward(x, w, bias)
        return F.linear(x, w, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self._op(x, self.layer.weight, self.layer.bias)
        if not self.training:
            return mean
        var = self._op(x * x, self.log_sigma2.exp(), None)
        return mean + var.clamp(min=1e-8).sqrt() * torch.randn_like(mean)

    def neg_kl(self) -> torch.Tensor:
        return neg_kl_nearest_mode(self.layer.weight, self.log_sigma2, self.r)

    @torch.no_grad()
    def snapped(self, log_alpha_prune: float) -> nn.Module:
        """The plain layer with pruned-or-nearest-level weights (at most 3 distinct values)."""
        theta, mu = self.layer.weight, levels(self.r.detach())
        q = mu[(theta.unsqueeze(-1) - mu).abs().argmin(dim=-1)]
        log_alpha = self.log_sigma2 - torch.log(theta ** 2 + 1e-8)
        q = torch.where(log_alpha > log_alpha_prune, torch.zeros_like(q), q)
        out = copy.deepcopy(self.layer)
        out.weight.copy_(q)
        return out


def _replace(model: nn.Module, fn) -> nn.Module:
    modules = dict(model.named_modules())
    for name, m in list(modules.items()):
        new = fn(m)
        if new is not None:
            parent, _, child = name.rpartition(".")
            setattr(modules[parent] if parent else model, child, new)
    return model


def ternary_layer_names(model: nn.Module, quantize_first_layer: bool) -> list[str]:
    """The layers VNQ quantizes: every Conv2d and Linear, the first one only if asked (the paper keeps it float)."""
    names = [n for n, l in model.named_modules() if isinstance(l, (nn.Conv2d, nn.Linear))]
    return names if quantize_first_layer else names[1:]


def variational(model: nn.Module, init_log_sigma2: float, quantize_first_layer: bool = True) -> nn.Module:
    """The ``ternary_layer_names`` layers wrapped in a ``VariationalLayer``."""
    model = copy.deepcopy(model)
    chosen = {id(model.get_submodule(n)) for n in ternary_layer_names(model, quantize_first_layer)}
    return _replace(model, lambda m: VariationalLayer(m, init_log_sigma2) if id(m) in chosen else None)


def snap(model: nn.Module, log_alpha_prune: float) -> nn.Module:
    return _replace(copy.deepcopy(model), lambda m: m.snapped(log_alpha_prune)
                    if isinstance(m, VariationalLayer) else None).eval()


@register(family="quantization")
class achterhold2018variational(QuantizationMethod):
    from_scratch = False

    @dataclass
    class Config:
        train_size: Annotated[int, Field(ge=1)] = 50000        # N of the ELBO (Fashion-MNIST's training split)
        beta: Annotated[float, Field(gt=0.0, le=1000.0)] = 100.0   # weight of the KL term after warm-up (ELBO: 1)
        warmup_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
        init_log_sigma2: Annotated[float, Field(ge=-20.0, le=0.0)] = -10.0
        log_alpha_prune: Annotated[float, Field(ge=-5.0, le=10.0)] = 2.0   # prune where log(sigma^2/theta^2) > this
        quantize_first_layer: bool = False                     # the paper's DenseNet keeps it float (Table 2)

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        model = variational(ctx.load_baseline(), c.init_log_sigma2, c.quantize_first_layer).to(ctx.device)
        layers = [m for m in model.modules() if isinstance(m, VariationalLayer)]
        state = {"beta": 0.0 if c.warmup_fraction > 0 else c.beta}

        def loss(out: ModelOutput, targets: torch.Tensor, teacher) -> torch.Tensor:
            return F.cross_entropy(out.logits, targets) - state["beta"] * sum(l.neg_kl() for l in layers) / c.train_size

        def warmup(_model: nn.Module, info: StepInfo) -> None:
            frac = info.step / max(1, info.total_steps * c.warmup_fraction) if c.warmup_fraction > 0 else 1.0
            state["beta"] = c.beta * min(1.0, frac)

        report = ctx.train_fn(model, epochs=ctx.epochs_finetune, loss=loss,
                              hooks=TrainHooks(after_step_info=warmup), stage="vnq")
        deployed = snap(model.cpu(), c.log_alpha_prune)
        return self._compressed(deployed, ctx, report)

    def _compressed(self, model: nn.Module, ctx: MethodContext, report) -> Compressed:
        ternary = ternary_layer_names(model, self.config.quantize_first_layer)
        plan = lambda m: {f"{n}.weight": container.Codebook(2)  # noqa: E731
                          for n in ternary_layer_names(m, self.config.quantize_first_layer)}
        encoded = EncodedModel(encode=lambda m: container.encode_model(m, plan(m)),
                               decode=lambda b: container.decode_model(b, ctx.build_baseline),
                               format="2-bit codes of ternary weights {-r, 0, r} per layer; the first layer "
                                      f"{'ternary too' if self.config.quantize_first_layer else 'float32'}; "
                                      "float32 BN and biases")
        layers = dict(model.named_modules())
        weights = [layers[n].weight for n in ternary]
        n_tern = sum(w.numel() for w in weights)
        n_all = sum(p.numel() for p in model.parameters())
        zeros = sum(int((w == 0).sum()) for w in weights) / n_tern
        full = [n for n, l in model.named_modules() if isinstance(l, (nn.Conv2d, nn.Linear)) and n not in ternary]
        return Compressed(model, real=False, storage_real=True, compute_real=False, encoded=encoded,
                          bits_per_weight=(2.0 * n_tern + 32.0 * (n_all - n_tern)) / n_all, train_report=report,
                          note="ternary weights (VNQ): storage real (2-bit codes in the encoded file); compute "
                               "simulated (float kernels)"
                               + ("" if not full else f"; float32 layers: {', '.join(full)}"),
                          extra={"distinct_values_per_layer_max": max(len(torch.unique(w)) for w in weights),
                                 "zero_weight_fraction": zeros, "full_precision_layers": full,
                                 "bits_per_weight_quantized_layers": 2.0, "beta": self.config.beta})
