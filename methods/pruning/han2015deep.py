"""Deep Compression: Compressing Deep Neural Networks with Pruning, Trained Quantization and Huffman Coding.

Han, Mao, Dally (2015), arXiv:1510.00149 (ICLR 2016). Key: han2015deep.
Implements the three-stage pipeline, composed from small functions (no second base class):
    1. Pruning (Sec. 2): iterative magnitude pruning with retraining; each round raises every
       layer's sparsity (the same fraction of the remaining weights per round) and retrains with
       the pruned connections held at zero (``LayerMasks`` of ``methods/pruning/_masks.py``).
    2. Trained quantization (Sec. 3): per layer, k-means on the surviving weights with linear
       centroid initialisation (Sec. 3.2, the paper's best), W = C[assign]; fine-tuning trains the
       centroids, dL/dC_k = sum_{ij: I_ij = k} dL/dW_ij (Sec. 3.3, Eq. 3), assignments fixed.
       Conv layers get 2^8 shared values, fc layers 2^5 (Sec. 3; LeNet uses 6 bits, Table 2).
    3. Huffman coding (Sec. 4) of the cluster indices and of the relative sparse indices; the
       sparse layout stores index differences in 8 (conv) / 5 (fc) bits with filler zeros when a
       gap is longer (Sec. 2, Fig. 2). The bytes are ``methods/encoding/container.py``'s format.
Real: storage. The encoded file is written, measured (size_bytes_encoded) and decoded by the
harness, and the decoded model must reproduce the scored accuracy exactly.
Simulated: compute. The decoded model runs dense float kernels (zeros multiplied, codebook values
expanded); ops_json reports the MACs that zero-skipping would leave (nonzero weights, and
nonzero weights x nonzero inputs averaged over the test images).
Deviations: one relative-index stream over each flattened layer (Fig. 2) instead of CSR/CSC with
row pointers; codebook index 0 is reserved for exact zero (pruned weights and fillers), so a layer
has 2^b - 1 trainable centroids; pruning uses a per-layer sparsity target (first and last layer
lighter, as the paper's Table 4 keeps more of them) instead of a threshold of quality x std;
retraining uses the harness's AdamW + cosine fine-tuning recipe for ``epochs_finetune`` per
pruning round and again for centroid fine-tuning (so (rounds + 1) x the fine-tuning budget);
biases and BN parameters stay float32 (the paper compresses weights only). A second level
(``sparsity_control``: hidden-layer sparsity 95%) repeats the whole pipeline as a control row.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import nn

from mcbench.methods.encoding import container
from mcbench.methods.flows import prune
from mcbench.methods.ops import nonzero_macs, tally
from mcbench.methods.protocols import Compressed, EncodedModel, MethodContext, PruningMethod, TrainHooks, TrainReport
from mcbench.methods.pruning._masks import PRUNABLE, LayerMasks
from mcbench.methods.registry import register


# --------------------------------------------------------------------------- stage 1: pruning
def weight_layers(model: nn.Module) -> list[str]:
    """Names of the Conv/Linear layers in registration (= forward, for the task nets) order."""
    return [n for n, m in model.named_modules() if isinstance(m, PRUNABLE)]


def layer_targets(names: list[str], sparsity: float, first: float, last: float) -> dict[str, float]:
    """Per-layer sparsity: ``first`` and ``last`` for the first and last weight layer, else ``sparsity``."""
    out = {n: sparsity for n in names}
    out[names[0]], out[names[-1]] = first, last
    return out


def round_sparsity(final: float, round_: int, rounds: int) -> float:
    """Round ``round_`` (1-based) of ``rounds``: density falls geometrically to ``1 - final``."""
    return 1.0 - (1.0 - final) ** (round_ / rounds)


def magnitude(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().abs()


def prune_and_retrain(model: nn.Module, ctx: MethodContext, targets: dict[str, float], rounds: int,
                      lr_scale: float = 1.0) -> tuple[dict[str, torch.Tensor], list[TrainReport], list[float]]:
    """Sec. 2: ``rounds`` of (prune by magnitude, retrain with pruned weights held at zero)."""
    groups = [LayerMasks(model, magnitude, only={n}) for n in targets]
    reports, trajectory = [], []
    for r in range(1, rounds + 1):
        for g, (name, s) in zip(groups, targets.items()):
            g.update(round_sparsity(s, r, rounds))
            g.apply()

        def hold_zero(m: nn.Module, step: int, total: int) -> None:
            for g in groups:
                g.apply()

        reports.append(ctx.train_fn(model, epochs=ctx.epochs_finetune, hooks=TrainHooks(after_step=hold_zero),
                                    lr_scale=lr_scale))
        hold_zero(model, 0, 0)
        masks = {n: g.masks[n] for g in groups for n in g.masks}
        trajectory.append(1.0 - sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values()))
    return masks, reports, trajectory


# --------------------------------------------------------------------------- stage 2: trained quantization
def linear_kmeans(values: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means of 1-D ``values`` with centroids initialised linearly over [min, max] (Sec. 3.2)."""
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(np.unique(values))))
    init = np.linspace(values.min(), values.max(), k).reshape(-1, 1)
    km = KMeans(n_clusters=k, init=init, n_init=1, random_state=seed).fit(values.reshape(-1, 1).astype(np.float64))
    return km.cluster_centers_.ravel().astype(np.float32), km.labels_


class SharedWeights(nn.Module):
    """A Conv/Linear whose weight is ``[0, centroids][assign]`` (Sec. 3): index 0 is a pruned weight.

    Autograd through the gather sums each cluster's weight gradients into its centroid (Eq. 3).
    """

    def __init__(self, layer: nn.Module, centroids: torch.Tensor, assign: torch.Tensor) -> None:
        super().__init__()
        del layer._parameters["weight"]
        self.layer = layer
        self.centroids = nn.Parameter(centroids.clone())
        self.register_buffer("assign", assign.clone())

    def weight(self) -> torch.Tensor:
        book = torch.cat([self.centroids.new_zeros(1), self.centroids])
        return book[self.assign]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.layer.weight = self.weight()
        return self.layer(x)

    def unshare(self) -> nn.Module:
        """The plain layer holding the shared values as its (dense float) weight."""
        self.layer.__dict__.pop("weight", None)  # the tensor the last forward computed (maybe mid-graph)
        layer = copy.deepcopy(self.layer)
        layer.weight = nn.Parameter(self.weight().detach().clone())
        return layer


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


@torch.no_grad()
def share_weights(model: nn.Module, bits: dict[str, int], seed: int = 0) -> None:
    """Replace each named layer by ``SharedWeights`` with ``2**bits - 1`` k-means centroids of its nonzeros."""
    for name, b in bits.items():
        layer = model.get_submodule(name)
        w = layer.weight.detach().cpu()
        nz = w != 0
        assign = torch.zeros(w.shape, dtype=torch.long)
        centroids = torch.zeros(0)
        if nz.any():
            c, labels = linear_kmeans(w[nz].numpy(), (1 << b) - 1, seed)
            centroids, assign[nz] = torch.from_numpy(c), torch.from_numpy(labels).long() + 1
        _set(model, name, SharedWeights(layer, centroids.to(layer.bias.device if layer.bias is not None
                                                          else w.device), assign.to(layer.weight.device)))


def unshare_weights(model: nn.Module) -> nn.Module:
    for name, m in list(model.named_modules()):
        if isinstance(m, SharedWeights):
            _set(model, name, m.unshare())
    return model


# --------------------------------------------------------------------------- the paper
@register(family="pruning")
class han2015deep(PruningMethod):
    structured = False

    @dataclass
    class Config:
        sparsity: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9             # Sec. 2, hidden layers
        sparsity_first: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.7       # first weight layer (Table 4)
        sparsity_last: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.7        # last weight layer (Table 2: 74%)
        prune_rounds: Annotated[int, Field(ge=1, le=20)] = 3                # prune-retrain iterations
        conv_bits: Annotated[int, Field(ge=1, le=8)] = 8                    # Sec. 3: 256 shared conv weights
        fc_bits: Annotated[int, Field(ge=1, le=8)] = 5                      # Sec. 3: 32 shared fc weights
        conv_index_bits: Annotated[int, Field(ge=1, le=16)] = 8             # Sec. 2: relative index, conv
        fc_index_bits: Annotated[int, Field(ge=1, le=16)] = 5               # Sec. 2: relative index, fc
        finetune_centroids: bool = True                                     # Sec. 3.3
        sparsity_control: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.95    # a second level, hidden layers (0: none)

    def _bits(self, model: nn.Module, names: list[str]) -> tuple[dict[str, int], dict[str, int]]:
        c = self.config
        conv = {n: isinstance(model.get_submodule(n), nn.Conv2d) for n in names}
        return ({n: c.conv_bits if conv[n] else c.fc_bits for n in names},
                {n: c.conv_index_bits if conv[n] else c.fc_index_bits for n in names})

    def encoding_plan(self, model: nn.Module) -> dict[str, container.Codec]:
        names = weight_layers(model)
        bits, index_bits = self._bits(model, names)
        return {f"{n}.weight": container.SparseCodebook(bits[n], index_bits[n]) for n in names}

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        return prune.at_levels(lambda s: self._run(ctx, s), "sparsity", c.sparsity, c.sparsity_control)

    def _run(self, ctx: MethodContext, sparsity: float) -> Compressed:
        """The three stages at hidden-layer ``sparsity`` (first and last layer at their own targets)."""
        c = self.config
        model = ctx.load_baseline().to(ctx.device)
        names = weight_layers(model)
        bits, _ = self._bits(model, names)
        masks, reports, trajectory = prune_and_retrain(
            model, ctx, layer_targets(names, sparsity, c.sparsity_first, c.sparsity_last), c.prune_rounds)
        share_weights(model, bits, seed=ctx.seed)
        if c.finetune_centroids:
            reports.append(ctx.train_fn(model, epochs=ctx.epochs_finetune))
        model = unshare_weights(model).eval()
        return self.finalize(model, masks, ctx, reports, trajectory)

    def finalize(self, model: nn.Module, masks: dict[str, torch.Tensor], ctx: MethodContext | None = None,
                 reports: list[TrainReport] | None = None, trajectory: list[float] | None = None) -> Compressed:
        plan = self.encoding_plan(model)
        data = container.encode_model(model.cpu(), plan)
        bitpacked = container.encode_model(model, {k: container.SparseCodebook(v.bits, v.index_bits, huffman=False)
                                                   for k, v in plan.items()})
        sizes = container.payload_sizes(data)
        numel = sum(model.get_submodule(k.rsplit(".", 1)[0]).weight.numel() for k in plan)
        total = sum(m.numel() for m in masks.values())
        density = sum(int(m.sum()) for m in masks.values()) / max(1, total)
        build = ctx.build_baseline if ctx is not None else None
        encoded = EncodedModel(
            encode=lambda m: container.encode_model(m, self.encoding_plan(m)),
            decode=lambda b: container.decode_model(b, build),
            format="deep-compression: relative sparse index + per-layer codebook, Huffman coded")
        report = reports[-1] if reports else None
        if report is not None and reports:
            report = TrainReport(best_epoch=report.best_epoch, val_top1_acc_pct=report.val_top1_acc_pct,
                                 epochs_run=sum(r.epochs_run for r in reports),
                                 flops_per_sample_train=report.flops_per_sample_train,
                                 seconds=sum(r.seconds for r in reports),
                                 samples_seen=sum(r.samples_seen for r in reports))
        return Compressed(
            model, real=False, storage_real=True, compute_real=False, encoded=encoded,
            count_ops=lambda m, x: tally(m, x, nonzero_macs), train_report=report,
            note="storage real: pruned + shared weights Huffman coded with relative indices, file measured and "
                 "decoded; compute simulated: dense float kernels",
            bits_per_weight=8.0 * sum(sizes[k] for k in plan) / max(1, numel),
            extra={"achieved_sparsity_pruned_layers": 1.0 - density, "sparsity_per_round": trajectory or [],
                   "size_bytes_pruned_quantized_bitpacked": len(bitpacked),
                   "size_bytes_pruned_quantized_huffman": len(data),
                   "size_bytes_pruned_csr_float32_theoretical": int(sum(
                       (int(m.sum()) * (32 + plan[f"{n}.weight"].index_bits) + 7) // 8 for n, m in masks.items())),
                   "weight_bits": {k: v.bits for k, v in plan.items()}},
        )
