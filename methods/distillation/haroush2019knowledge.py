"""The Knowledge Within: Methods for Data-Free Model Compression.

Haroush, Hubara, Hoffer, Soudry (2019/CVPR 2020), arXiv:1912.01274. Key: haroush2019knowledge.
Implements the BN-statistics synthesis of Section 3 ("BNS") and its use to calibrate a quantized
model without data (Section 4):
    Starting from Gaussian noise, inputs x are optimised so that the batch statistics at every
    BatchNorm layer l of the trained model match the statistics it stored:
        L_BNS(x) = sum_l sum_c KL( N(mu_hat_lc, sigma_hat_lc^2) || N(mu_lc, sigma_lc^2) )
                 = sum_l sum_c [ log(sigma_lc / sigma_hat_lc) + (sigma_hat_lc^2 + (mu_hat_lc - mu_lc)^2)
                   / (2 sigma_lc^2) - 1/2 ],
        mu_hat, sigma_hat^2: the batch mean and variance of the BN's input over x; mu, sigma^2: the
        BN's running statistics. No labels and no teacher outputs are used.
    The synthetic batches then calibrate post-training int8 quantization of the trained baseline
    (observers set the activation ranges), the role the paper gives them for its quantized models.
    Data-free: the harness withholds the training split; compare with a post-training
    quantization row calibrated on real training images.
Real: int8 weights and activations on int8 kernels (torch.ao FX, oneDNN engine by default). Simulated: nothing.
Deviations: calibration only; the paper's fine-tuning of low-bit (4-bit) models by distillation
on the synthetic data is not implemented (int8 post-training quantization needs none).
``num_images`` = 256 at ``iterations`` = 100 Adam steps (the paper optimises larger batches for
longer); pixels are clamped to [0, 1] after each step.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from mcbench.methods.flows import quantize
from mcbench.methods.flows.distill import frozen
from mcbench.methods.protocols import Compressed, DistillationMethod, MethodContext
from mcbench.methods.registry import register


def gaussian_kl(mu_hat: torch.Tensor, var_hat: torch.Tensor, mu: torch.Tensor, var: torch.Tensor,
                eps: float = 1e-5) -> torch.Tensor:
    """KL(N(mu_hat, var_hat) || N(mu, var)), summed over channels."""
    var_hat, var = var_hat + eps, var + eps
    return (0.5 * torch.log(var / var_hat) + (var_hat + (mu_hat - mu) ** 2) / (2 * var) - 0.5).sum()


class BNSLoss:
    """Forward hooks on every BatchNorm collecting the KL terms of one forward pass."""

    def __init__(self, model: nn.Module) -> None:
        self.terms: list[torch.Tensor] = []
        self._handles = [m.register_forward_hook(self._hook) for m in model.modules()
                         if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not self._handles:
            raise ValueError(f"{type(model).__name__} has no BatchNorm layer: BN-statistics synthesis needs one")

    def _hook(self, bn: nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        x = inp[0]
        dims = [0] + list(range(2, x.dim()))
        self.terms.append(gaussian_kl(x.mean(dims), x.var(dims, unbiased=False), bn.running_mean, bn.running_var))

    def pop(self) -> torch.Tensor:
        value = torch.stack(self.terms).sum()
        self.terms = []
        return value

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def synthesize_bns(model: nn.Module, num_images: int, shape: tuple[int, ...], *, iterations: int, batch_size: int,
                   lr: float, device: torch.device | str = "cpu",
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, float, float, float]:
    """Images whose BN statistics match the model's: (images in [0, 1], first loss, last loss, seconds)."""
    frozen(model)
    loss = BNSLoss(model)
    images, firsts, lasts = [], [], []
    t0 = time.perf_counter()
    try:
        for start in range(0, num_images, batch_size):
            n = min(batch_size, num_images - start)
            x = (0.5 + 0.25 * torch.randn(n, *shape, generator=generator)).clamp(0, 1).to(device).requires_grad_(True)
            opt = torch.optim.Adam([x], lr=lr)
            for it in range(iterations):
                model(x)
                value = loss.pop()
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
                with torch.no_grad():
                    x.clamp_(0.0, 1.0)
                if it == 0:
                    firsts.append(value.item())
            with torch.no_grad():
                model(x)
                lasts.append(loss.pop().item())
            images.append(x.detach())
    finally:
        loss.close()
    return torch.cat(images), sum(firsts) / len(firsts), sum(lasts) / len(lasts), time.perf_counter() - t0


@register(family="distillation")
class haroush2019knowledge(DistillationMethod):
    data_free = True

    @dataclass
    class Config:
        num_images: Annotated[int, Field(ge=1)] = 256
        iterations: Annotated[int, Field(ge=1)] = 100
        batch_size: Annotated[int, Field(ge=2)] = 128         # BN statistics need a batch
        lr: Annotated[float, Field(gt=0)] = 0.05
        engine: Literal["x86", "fbgemm", "qnnpack", "onednn"] = "onednn"   # as jacob2017quantization

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        model = ctx.load_baseline()
        gen = torch.Generator().manual_seed(ctx.seed)
        images, first, last, seconds = synthesize_bns(model, c.num_images, (ctx.in_chans, *ctx.input_size),
                                                      iterations=c.iterations, batch_size=c.batch_size, lr=c.lr,
                                                      device=ctx.device, generator=gen)
        ctx.ledger.add("bns_synthesis", seconds=seconds, samples=len(images) * c.iterations)
        prepared = quantize.prepare_ptq(model.cpu(), ctx, engine=c.engine)
        quantize.calibrate_ptq(prepared, images.cpu().split(c.batch_size))
        q = quantize.convert_int8(prepared, engine=c.engine)
        return Compressed(q, real=True, note=f"post-training int8 (torch.ao FX, {c.engine} engine) calibrated on "
                                             "images synthesised from the model's BN statistics (no real data)",
                          bits_per_weight=8.0, quant_engine=c.engine, macs_model=quantize.float_twin(prepared),
                          extra={"synthetic_images": len(images), "bns_loss_first": first, "bns_loss_last": last})
