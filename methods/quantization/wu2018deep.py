"""Deep k-Means: Re-Training and Parameter Sharing with Harder Cluster Assignments for Compressing Deep Convolutions.

Wu, Wang, Wu, Wang, Veeraraghavan, Lin (2018), ICML 2018 (PMLR 80), arXiv:1806.09228. Key: wu2018deep.
Implements re-training with the k-means regulariser, then weight sharing (Sections 3.1-3.3):
    each conv layer's weights are cut into sub-vectors (kernel rows, W in R^{N x m}, m the kernel width, as the
    authors' code does) that are clustered into K centres;
    the k-means objective in trace form (Zha et al. 2001), the regulariser of the re-training loss:
        L = CE + lambda/2 sum_layers [ tr(W^T W) - tr(F^T W W^T F) ] = CE + lambda/2 sum ||W - F F^T W||^2
    with F (N x K, orthonormal columns) held fixed between updates, so its gradient lambda (W - F F^T W) pulls
    every sub-vector toward its cluster centre (harder assignments); F is refreshed every ``update_every``
    steps from the current weights;
    after re-training, k-means on the sub-vectors and weight sharing: W = C[assign] (K centres per layer).
The control ``deep-compression`` is Deep Compression's trained quantization at the same number of clusters
(han2015deep: scalar k-means with linear initialisation, 2^b - 1 centroids + the zero slot, centroids fine-tuned
for the same epochs), on the same trained baseline.
Real: storage. The encoded file holds each conv layer's K x m float32 centres and its N cluster indices
bit-packed at ceil(log2 K) bits; the classifier, biases and BN stay float32 (the paper compresses convolutions).
Simulated: compute (the shared values expanded into dense float kernels).
Deviations: F is the normalised indicator matrix of the current k-means assignment (the discrete optimum of the
same trace problem): the paper's relaxed F (the top-K eigenvectors of W W^T) makes the regulariser vanish
whenever K >= m, since W W^T has rank <= m; the paper's energy metrics are not computed; AdamW + cosine
fine-tuning of the harness for ``epochs_finetune`` epochs.
lambda = 100 by default, chosen on validation (task CNN 32-64-128, 2 epochs on 20,000 images, then 2 of
re-training, K = 32): at lambda = 1 the rows stay 3-35% (relative) from their centres and sharing takes
validation from 81.2% to 73.0%; at lambda = 100 they are within 0.1% and sharing is lossless (80.1% -> 80.0%).
The row's validation score is measured after sharing (``ctx.evaluate``), on the model that is scored.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.encoding import container
from mcbench.methods.protocols import Compressed, EncodedModel, MethodContext, ModelOutput, QuantizationMethod, TrainHooks
from mcbench.methods.registry import register


def rows(w: torch.Tensor) -> torch.Tensor:
    """A conv weight (out, in, kh, kw) as N = out*in*kh sub-vectors of length kw (a view)."""
    return w.reshape(-1, w.shape[-1])


def lloyd(x: torch.Tensor, centres: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd iterations from ``centres``: (centres, labels); an emptied cluster keeps its centre."""
    x = x.detach()
    labels = torch.cdist(x, centres).argmin(dim=1)
    for _ in range(iters):
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        counts = torch.zeros(len(centres), dtype=x.dtype, device=x.device).index_add_(0, labels, torch.ones_like(x[:, 0]))
        new = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
        new_labels = torch.cdist(x, new).argmin(dim=1)
        centres = new
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return centres, labels


def kmeans(x: torch.Tensor, k: int, seed: int = 0, iters: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means++ seeding (scikit-learn) then Lloyd: (centres, labels) of the rows of ``x``."""
    from sklearn.cluster import kmeans_plusplus

    x = x.detach()
    k = max(1, min(k, len(torch.unique(x, dim=0))))
    init, _ = kmeans_plusplus(x.cpu().double().numpy(), n_clusters=k, random_state=seed)
    return lloyd(x, torch.as_tensor(init, dtype=x.dtype, device=x.device), iters)


def projected(w_rows: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """F F^T W for the normalised indicator F of ``labels``: each row replaced by its cluster mean
    (differentiable in W: the trace form's gradient)."""
    sums = torch.zeros(k, w_rows.shape[1], dtype=w_rows.dtype, device=w_rows.device).index_add(0, labels, w_rows)
    counts = torch.zeros(k, dtype=w_rows.dtype, device=w_rows.device).index_add_(0, labels, torch.ones_like(w_rows[:, 0]))
    return (sums / counts.clamp(min=1)[:, None])[labels]


def kmeans_penalty(w_rows: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """tr(W^T W) - tr(F^T W W^T F) = ||W - F F^T W||^2: the k-means objective of the fixed assignment."""
    return ((w_rows - projected(w_rows, labels, k)) ** 2).sum()


def conv_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


@torch.no_grad()
def share(model: nn.Module, centres: dict[str, torch.Tensor], seed: int = 0) -> nn.Module:
    """Final k-means (warm-started from ``centres``) and weight sharing W = C[assign] in every conv layer."""
    for name in conv_layers(model):
        w = model.get_submodule(name).weight
        c, labels = lloyd(rows(w), centres[name], 100) if name in centres else kmeans(rows(w), 2, seed)
        w.copy_(c[labels].reshape(w.shape))
    return model


# --------------------------------------------------------------------------- encoded format
def _index_bits(k: int) -> int:
    return max(1, math.ceil(math.log2(max(k, 2))))


def encoded_format(build, k: int) -> EncodedModel:
    """Per conv layer: the used centres (float32, K x m) and the indices bit-packed at ceil(log2 K) bits."""
    bits = _index_bits(k)

    def encode(model: nn.Module) -> bytes:
        state, plan = {}, {}
        convs = set(conv_layers(model))
        for key, v in model.state_dict().items():
            layer = key[: -len(".weight")] if key.endswith(".weight") else None
            if layer in convs:
                centres, labels = torch.unique(rows(v), dim=0, return_inverse=True)
                if len(centres) > k:
                    raise ValueError(f"{key}: {len(centres)} distinct sub-vectors exceed K = {k}; share before encoding")
                state[f"{layer}.centres"], state[f"{layer}.assign"] = centres, labels.float()
                plan[f"{layer}.assign"] = container.Codebook(bits)
            else:
                state[key] = v
        return container.encode_state(state, plan)

    def decode(data: bytes) -> nn.Module:
        model = build()
        shapes = {key: v.shape for key, v in model.state_dict().items()}
        decoded = container.decode_state(data)
        state = {}
        for key, v in decoded.items():
            if key.endswith(".assign"):
                layer = key[: -len(".assign")]
                state[f"{layer}.weight"] = decoded[f"{layer}.centres"][v.long()].reshape(shapes[f"{layer}.weight"])
            elif not key.endswith(".centres"):
                state[key] = v
        model.load_state_dict(state, strict=True)
        return model.eval()

    return EncodedModel(encode, decode,
                        format=f"per conv layer: K={k} centres (float32 kernel-row sub-vectors) + {bits}-bit "
                               "packed indices; classifier, biases and BN float32")


@register(family="quantization")
class wu2018deep(QuantizationMethod):
    from_scratch = False

    @dataclass
    class Config:
        clusters: Annotated[int, Field(ge=2, le=4096)] = 32        # K per conv layer
        reg: Annotated[float, Field(ge=0.0, le=1e4)] = 100.0       # lambda (chosen on validation, see below)
        update_every: Annotated[int, Field(ge=1)] = 50             # steps between refreshes of F
        dc_control: bool = True                                    # Deep Compression at the same K

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        baseline = ctx.load_baseline().to(ctx.device)
        model = copy.deepcopy(baseline)
        layers = {n: model.get_submodule(n) for n in conv_layers(model)}
        state = {n: kmeans(rows(m.weight), c.clusters) for n, m in layers.items()}   # (centres, labels)

        def loss(out: ModelOutput, y: torch.Tensor, teacher) -> torch.Tensor:
            penalty = sum(kmeans_penalty(rows(m.weight), state[n][1], len(state[n][0])) for n, m in layers.items())
            return F.cross_entropy(out.logits, y) + 0.5 * c.reg * penalty

        def refresh(m: nn.Module, step: int, total: int) -> None:
            if step % c.update_every == 0:
                for n, layer in layers.items():
                    state[n] = lloyd(rows(layer.weight), state[n][0], 5)

        report = ctx.train_fn(model, epochs=max(1, ctx.epochs_finetune), loss=loss, stage="k-means-retrain",
                              hooks=TrainHooks(after_step=refresh))
        share(model, {n: s[0] for n, s in state.items()})
        # the row's validation score is the shared model's, not the re-trained one's before sharing
        report = dataclasses.replace(report, val_top1_acc_pct=ctx.evaluate(model.eval()))
        out = self._compressed(model.eval(), ctx, report)
        if c.dc_control:
            out.controls["deep-compression"] = self._deep_compression(baseline, ctx)
        return out

    def _bits_per_weight(self, model: nn.Module) -> float:
        k, total, bits = self.config.clusters, 0, 0.0
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                total += m.weight.numel()
                if isinstance(m, nn.Conv2d):
                    n_rows, width = rows(m.weight).shape
                    bits += n_rows * _index_bits(k) + k * width * 32
                else:
                    bits += m.weight.numel() * 32
        return bits / max(total, 1)

    def _compressed(self, model: nn.Module, ctx: MethodContext, report) -> Compressed:
        k = self.config.clusters
        return Compressed(model, real=False, storage_real=True, compute_real=False, train_report=report,
                          encoded=encoded_format(ctx.build_baseline, k), bits_per_weight=self._bits_per_weight(model),
                          note=f"Deep k-Means: K={k} shared kernel-row centres per conv layer: storage real (centres + "
                               f"{_index_bits(k)}-bit packed indices in the encoded file); compute simulated (dense "
                               "float kernels)",
                          extra={"clusters": k, "subvector": "kernel row", "regulariser": self.config.reg,
                                 "activation_bits": 32, "full_precision_layers": [n for n, m in model.named_modules()
                                                                                  if isinstance(m, nn.Linear)]})

    def _deep_compression(self, baseline: nn.Module, ctx: MethodContext) -> Compressed:
        from mcbench.methods.pruning.han2015deep import share_weights, unshare_weights

        b = _index_bits(self.config.clusters)
        model = copy.deepcopy(baseline)
        convs = conv_layers(model)
        share_weights(model, {n: b for n in convs})
        report = ctx.train_fn(model, epochs=max(1, ctx.epochs_finetune), stage="deep-compression-centroids")
        model = unshare_weights(model).eval()
        plan = lambda m: {f"{n}.weight": container.Codebook(b) for n in convs}  # noqa: E731
        encoded = EncodedModel(encode=lambda m: container.encode_model(m, plan(m)),
                               decode=lambda data: container.decode_model(data, ctx.build_baseline),
                               format=f"per conv layer: {b}-bit packed indices into 2^{b} scalar values (float32)")
        n_conv = sum(model.get_submodule(n).weight.numel() for n in convs)
        n_all = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        return Compressed(model, real=False, storage_real=True, compute_real=False, train_report=report,
                          encoded=encoded, bits_per_weight=(n_conv * b + (n_all - n_conv) * 32) / max(n_all, 1),
                          note=f"Deep Compression's trained quantization at {2 ** b} shared scalar values per conv "
                               "layer (the same number of clusters): storage real, compute simulated",
                          extra={"clusters": 2 ** b, "subvector": "scalar", "activation_bits": 32,
                                 "bits_per_weight_quantized_layers": b,
                                 "full_precision_layers": [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]})
