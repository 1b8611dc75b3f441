"""SCOP: Scientific Control for Reliable Neural Network Pruning.

Tang, Wang, Xu, Tao, Xu, Xu, Xu (2020), arXiv:2010.10732 (NeurIPS 2020). Key: tang2020scop.
Implements Sec. 3 on the trained baseline:
    knockoff data (Sec. 3.1, Def. 1): X_tilde exchangeable with X and independent of the label given X;
    knockoff features A_tilde_l = f_l(X_tilde) of the pretrained network;
    every filter of layer l gets two learnable scaling factors in [0, 1], beta (real) and beta_tilde
    (knockoff), and the layer passes on  beta (.) A_l + beta_tilde (.) A_tilde_l  (Sec. 3.2, Eq. 6);
    only the factors are trained (cross-entropy on the real labels), the network stays fixed;
    importance I = beta - beta_tilde (Eq. 9): the filters whose knockoff features are weighted as
    much as their real ones go first; ``channel_ratio`` of each layer's filters are removed for real
    and the smaller network is fine-tuned.
Knockoffs here are second-order (model-X Gaussian) knockoffs of the flattened images (Candes et al.
2018, equicorrelated construction): with the correlation matrix S shrunk towards I (S + eps I, so it
is well conditioned) and s = min(1, 2 lambda_min(S)),
    X_tilde = X - X S^-1 s + Z C^T,  C C^T = 2 s I - s^2 S^-1,   on standardised pixels.
Controls: ``ratio<pct>`` (a second level).
Real: channels removed for real (parameters, MACs, measured latency).  Simulated: nothing.
Deviations: Gaussian knockoffs instead of the paper's trained deep knockoff generator (they match
the first two moments only); the factors train for the fine-tuning budget with the harness's AdamW
(no separate schedule); the factors sit at the BN output of each single-consumer conv-BN-ReLU chain
(no residual-sum channels); one pruning ratio per layer.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from mcbench.methods.flows import prune
from mcbench.methods.protocols import Compressed, MethodContext, PruningMethod
from mcbench.methods.registry import register


class GaussianKnockoffs:
    """Equicorrelated second-order knockoffs of flattened inputs, fitted on calibration data."""

    def __init__(self, x: torch.Tensor, shrink: float = 0.1) -> None:
        f = x.flatten(1).double()
        self.shape = x.shape[1:]
        self.mu, self.sd = f.mean(0), f.std(0).clamp_min(1e-6)
        z = (f - self.mu) / self.sd
        corr = (z.T @ z) / max(1, len(z) - 1)
        corr = (1 - shrink) * corr + shrink * torch.eye(corr.shape[0], dtype=corr.dtype)
        lam_min = float(torch.linalg.eigvalsh(corr)[0])
        self.s = min(1.0, 2.0 * lam_min) * 0.999
        inv = torch.linalg.inv(corr)
        self.a = torch.eye(corr.shape[0], dtype=corr.dtype) - self.s * inv
        cov = 2 * self.s * torch.eye(corr.shape[0], dtype=corr.dtype) - self.s ** 2 * inv
        evals, evecs = torch.linalg.eigh((cov + cov.T) / 2)
        self.c = evecs * evals.clamp_min(0).sqrt()
        self.corr = corr

    def __call__(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        z = (x.flatten(1).double().cpu() - self.mu) / self.sd
        noise = torch.randn(z.shape, generator=gen, dtype=z.dtype)
        zk = z @ self.a.T + noise @ self.c.T
        return (zk * self.sd + self.mu).to(x.dtype).view(x.shape).to(x.device)


class ScopNet(nn.Module):
    """The pretrained network (frozen) with learnable real/knockoff factors after each chain's BN."""

    def __init__(self, model: nn.Module, bns: dict[str, str], knockoffs: GaussianKnockoffs, seed: int = 0) -> None:
        super().__init__()
        self.net = model
        for p in self.net.parameters():
            p.requires_grad_(False)
        mods = dict(model.named_modules())
        self.bns = bns                                      # producer conv -> its BN
        self.logit_real = nn.ParameterDict({k.replace(".", "_"): nn.Parameter(torch.zeros(mods[b].num_features))
                                            for k, b in bns.items()})
        self.logit_knock = nn.ParameterDict({k.replace(".", "_"): nn.Parameter(torch.zeros(mods[b].num_features))
                                             for k, b in bns.items()})
        self.knockoffs = knockoffs
        self.gen = torch.Generator().manual_seed(seed)
        self._knock: dict[str, torch.Tensor] = {}
        self._mode = "off"
        for k, b in bns.items():
            mods[b].register_forward_hook(self._hook(k.replace(".", "_")))

    def factors(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sigmoid(self.logit_real[key]), torch.sigmoid(self.logit_knock[key])

    def _hook(self, key: str):
        def fn(_m, _i, out):
            if self._mode == "knockoff":
                self._knock[key] = out.detach()
                return out
            if self._mode == "off":
                return out
            beta, beta_k = self.factors(key)
            shape = (1, -1) + (1,) * (out.dim() - 2)
            return beta.view(shape) * out + beta_k.view(shape) * self._knock[key]
        return fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.net.eval()                                     # a fixed network: BN uses its running statistics
        self._mode = "knockoff"
        with torch.no_grad():                               # knockoff features of the pretrained network (Eq. 6)
            self.net(self.knockoffs(x, self.gen))
        self._mode = "real"
        try:
            return self.net(x)
        finally:
            self._mode = "off"

    def importance(self) -> dict[str, torch.Tensor]:
        """I = beta - beta_tilde per filter (Eq. 9), by producer conv name."""
        out = {}
        for k in self.bns:
            beta, beta_k = self.factors(k.replace(".", "_"))
            out[k] = (beta - beta_k).detach()
        return out


def scop_scores(ctx: MethodContext, model: nn.Module) -> dict[str, torch.Tensor]:
    """Train the factors of a copy of ``model`` and return I = beta - beta_tilde per chain conv."""
    example = ctx.example_input(1)
    bn_of = {g.root: next(iter(g.norms)) for g in prune.channel_groups(model.cpu().eval(), example.cpu())
             if len(g.producers) == 1 and len(g.norms) == 1}   # conv -> the BatchNorm carrying its channels
    calib = torch.cat([b.cpu() for b in ctx.calibration_batches()])
    net = ScopNet(copy.deepcopy(model), bn_of, GaussianKnockoffs(calib), ctx.seed)
    net = net.to(ctx.device)
    report = ctx.train_fn(net, epochs=ctx.epochs_finetune, stage="scop-factors")
    return net.importance(), report


@torch.no_grad()
def remove_by_scores(ctx: MethodContext, model: nn.Module, scores: dict[str, torch.Tensor], ratio: float) -> nn.Module:
    return prune.remove_lowest_channels(ctx, model, scores, ratio)


@register(family="pruning")
class tang2020scop(PruningMethod):
    structured = True

    @dataclass
    class Config:
        channel_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.5   # fraction of each layer's filters removed
        ratio_control: Annotated[float, Field(ge=0, lt=1)] = 0.7   # a second level (0: none)

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        base = ctx.load_baseline()
        scores, report = scop_scores(ctx, base)
        return prune.at_levels(lambda r: self._finish(ctx, base, scores, r, report), "channel_ratio", c.channel_ratio,
                               c.ratio_control)

    def _finish(self, ctx: MethodContext, base: nn.Module, scores, ratio: float, factor_report) -> Compressed:
        small = remove_by_scores(ctx, copy.deepcopy(base), scores, ratio).to(ctx.device)
        report = ctx.train_fn(small, epochs=ctx.epochs_finetune, stage="finetune")
        widths = [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)]
        return Compressed(small.eval(), real=True, train_report=report,
                          note=f"SCOP: {ratio:.0%} of each conv's filters with the lowest real-minus-knockoff factor "
                               "removed for real, fine-tuned",
                          extra={"conv_out_channels": widths,
                                 "factor_training_val_top1_acc_pct": factor_report.val_top1_acc_pct})
