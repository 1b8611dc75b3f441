"""Channel Pruning for Accelerating Very Deep Neural Networks.

He, Zhang, Sun (2017), ICCV 2017, arXiv:1707.06168. Key: he2017channel.
Implements Section 3.1 (Eq. 1-3) with the multi-layer scheme of Section 3.2. To remove channels of a
conv's output, the *next* layer (the consumer reading them) is sampled on calibration data: N patches
X_i (N x k_h k_w, one per input channel i; 10 random positions per image as in the paper) and its
output Y (N x n). With Z_i = X_i W_i^T,

    min_beta ||Y - sum_i beta_i Z_i||_F^2 + lambda ||beta||_1   s.t. ||beta||_0 <= c'       (Eq. 3, step i)

is solved along the LASSO path (LARS on the Gram matrix of vec(Z_i), scikit-learn's
``lars_path_gram``): increasing lambda from 0 is walking the path from its sparse end, and the first
point with c' non-zero beta_i gives the kept channels. Then the consumer's weights are
reconstructed by least squares from the kept channels only (step ii, applied once as the paper does
"in practice"):  W' = argmin ||Y - X'_kept W'^T||_F^2.  Layers are pruned in order, each with X from
the already-pruned network and Y from the original one (Sec. 3.2), so errors do not accumulate.
Finally the network is fine-tuned (the paper reports results with and without fine-tuning).
Real: channels are removed for real (Torch-Pruning, ``methods/pruning/_surgery.py``): parameters, MACs, latency.
Simulated: nothing.
Deviations: a uniform channel ratio for every removable conv (the paper sets per-layer ratios for
VGG-16 from a sensitivity analysis); the task CNN (no residual branches, so Sec. 3.3 is not needed);
calibration batches of the harness (a few hundred images) instead of 5000 images; no 3-branch or
factorization combination (Sec. 4.1.2). A second level (``ratio_control``, 70% of channels) is a control row.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from sklearn.linear_model import lars_path_gram
from torch import nn

from mcbench.methods.flows import prune
from mcbench.methods.protocols import Compressed, MethodContext, PruningMethod
from mcbench.methods.pruning._layerview import layer_views
from mcbench.methods.pruning._physical import find_chains
from mcbench.methods.registry import register


# --------------------------------------------------------------------------- sampling
def sample_positions(x: torch.Tensor, consumer: nn.Module, per_image: int, gen: torch.Generator) -> torch.Tensor | None:
    """Random output positions of ``consumer`` per image, (B, per_image); None for a Linear consumer."""
    if isinstance(consumer, nn.Linear):
        return None
    n_pos = F.unfold(x[:1], consumer.kernel_size, consumer.dilation, consumer.padding, consumer.stride).shape[-1]
    return torch.randint(n_pos, (x.shape[0], per_image), generator=gen).to(x.device)   # drawn on the CPU generator


def patches(x: torch.Tensor, consumer: nn.Module, pos: torch.Tensor | None) -> torch.Tensor:
    """The consumer's input at ``pos`` as (N, c, k_h k_w): X_i is ``[:, i, :]``."""
    if isinstance(consumer, nn.Linear):
        return x.reshape(x.shape[0], -1, 1)
    if consumer.groups != 1 or consumer.padding_mode != "zeros":
        raise ValueError("he2017channel: only zero-padded, groups=1 convolutions can be reconstructed")
    cols = F.unfold(x, consumer.kernel_size, consumer.dilation, consumer.padding, consumer.stride)  # (B, c*k, L)
    b, d, _ = cols.shape
    picked = cols.gather(2, pos.unsqueeze(1).expand(b, d, pos.shape[1]))                          # (B, c*k, P)
    c = consumer.in_channels
    return picked.permute(0, 2, 1).reshape(-1, c, d // c)


def flat_weight(consumer: nn.Module) -> torch.Tensor:
    """The consumer's weight as (n, c, k_h k_w)."""
    w = consumer.weight.detach()
    return w.reshape(w.shape[0], w.shape[1], -1)


# --------------------------------------------------------------------------- Eq. 3, steps (i) and (ii)
def select_channels(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor, keep: int, chunk: int = 1024) -> torch.Tensor:
    """Step (i): indices of the ``keep`` channels of the LASSO path's first point with ``keep`` non-zero beta.

    ``x`` (N, c, k), ``w`` (n, c, k), ``y`` (N, n). Works on the Gram matrix of the c columns
    vec(Z_i), Z_i = X_i W_i^T, accumulated in chunks of N so Z (N n x c) is never held at once.
    """
    c = x.shape[1]
    if keep >= c:
        return torch.arange(c)
    gram = torch.zeros(c, c, dtype=torch.float64, device=x.device)
    xy = torch.zeros(c, dtype=torch.float64, device=x.device)
    for s in range(0, x.shape[0], chunk):
        z = torch.einsum("Nck,nck->Nnc", x[s:s + chunk].double(), w.double()).reshape(-1, c)
        gram += z.T @ z
        xy += z.T @ y[s:s + chunk].double().reshape(-1)
    n_samples = x.shape[0] * w.shape[0]
    gram, xy = gram.cpu(), xy.cpu()               # the LASSO path runs in scikit-learn, on the CPU
    _, _, coefs = lars_path_gram(xy.numpy(), gram.numpy(), n_samples=n_samples, method="lasso", max_iter=4 * c)
    nnz = (coefs != 0).sum(0)
    hit = np.flatnonzero(nnz >= keep)
    beta = coefs[:, hit[0]] if len(hit) else coefs[:, -1]
    order = np.lexsort((-np.abs(xy.numpy()), -np.abs(beta)))   # |beta| first, then correlation for ties at 0
    return torch.as_tensor(np.sort(order[:keep]))


def reconstruct(x: torch.Tensor, y: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Step (ii): least-squares weights (n, c', k) mapping the kept channels' patches to ``y``."""
    xk = x[:, kept].reshape(x.shape[0], -1).double().cpu()      # gelsd (rank-revealing) is a CPU LAPACK driver
    sol = torch.linalg.lstsq(xk, y.double().cpu(), driver="gelsd").solution        # (c' k, n)
    return sol.T.reshape(y.shape[1], len(kept), x.shape[2]).to(device=x.device, dtype=x.dtype)


def reconstruction_error(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> float:
    """||Y - sum_i X_i W_i^T||_F^2 / ||Y||_F^2 for patches ``x`` (N, c, k) and weights ``w`` (n, c, k)."""
    pred = x.reshape(x.shape[0], -1) @ w.reshape(w.shape[0], -1).T
    return float(((y - pred) ** 2).sum() / (y ** 2).sum())


# --------------------------------------------------------------------------- the flow
@torch.no_grad()
def channel_pruning(ctx: MethodContext, model: nn.Module, ratio: float, per_image: int = 10) -> nn.Module:
    """Prune ``ratio`` of the output channels of every removable conv, in order, by LASSO selection and
    least-squares reconstruction of each consumer (Sec. 3.1-3.2); returns a physically smaller copy on CPU."""
    model = model.to(ctx.device).eval()
    reference = copy.deepcopy(model)          # the unpruned network: Y comes from it (Sec. 3.2)
    example = ctx.example_input(1)
    chains = find_chains(model, example)
    batches = ctx.calibration_batches()
    gen = torch.Generator().manual_seed(ctx.seed)
    mods = dict(model.named_modules())
    for name, chain in chains.items():
        consumer = mods[chain.consumer]
        x_now = layer_views(model, example, names=[chain.consumer], batches=batches, activations=True)[chain.consumer]
        x_ref = layer_views(reference, example, names=[chain.consumer], batches=batches,
                            activations=True)[chain.consumer]
        pos = sample_positions(x_now.inputs, consumer, per_image, gen)
        xs, xr = patches(x_now.inputs, consumer, pos), patches(x_ref.inputs, consumer, pos)
        y = xr.reshape(xr.shape[0], -1) @ flat_weight(x_ref.module).reshape(consumer.weight.shape[0], -1).T
        c = consumer.weight.shape[1]
        kept = select_channels(xs, flat_weight(consumer), y, c - int(ratio * c))
        w_new = torch.zeros_like(flat_weight(consumer))
        w_new[:, kept] = reconstruct(xs, y, kept)
        consumer.weight.copy_(w_new.reshape(consumer.weight.shape))
        prune.mask_channels_except(model, name, kept, chains)
    return prune.remove_channels(model, example)


@register(family="pruning")
class he2017channel(PruningMethod):
    structured = True

    @dataclass
    class Config:
        channel_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.5     # fraction of channels removed per conv
        positions_per_image: Annotated[int, Field(ge=1)] = 10        # sampled output positions per image (paper: 10)
        finetune: bool = True                                        # fine-tune after reconstruction
        ratio_control: Annotated[float, Field(ge=0, lt=1)] = 0.7     # a second level (0: none)

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        return prune.at_levels(lambda r: self._run(ctx, r), "channel_ratio", c.channel_ratio, c.ratio_control)

    def _run(self, ctx: MethodContext, ratio: float) -> Compressed:
        model = channel_pruning(ctx, ctx.load_baseline(), ratio, self.config.positions_per_image)
        model = model.to(ctx.device)
        report = ctx.train_fn(model, epochs=ctx.epochs_finetune) if self.config.finetune else None
        widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
        return Compressed(model.eval(), real=True, train_report=report,
                          note=f"{ratio:.0%} of each conv's channels removed for real by LASSO "
                               "selection with least-squares reconstruction" + (", then fine-tuned" if report else ""),
                          extra={"conv_out_channels": widths})
