"""Efficient Sparse-Winograd Convolutional Neural Networks.

Liu, Pool, Han, Dally (2018), arXiv:1802.06367 (ICLR 2018). Key: liu2018efficient.
Implements the Winograd-ReLU CNN (Sec. 3, Fig. 1c) with F(2x2, 3x3) on the trained baseline:
    Y = A^T [ U (.) ReLU(B^T d B) ] A                                      (Sec. 3, Eq. 3)
    every 3x3, stride-1, zero-padded conv that reads a ReLU's output becomes a Winograd-ReLU layer:
    its Winograd-domain weights U (4x4 per input/output channel pair) start at G g G^T (exactly the
    direct convolution while the ReLU stays in the spatial domain), the spatial ReLU before it is
    removed and the ReLU is applied to the transformed input tiles instead; U is pruned by magnitude
    in the Winograd domain (the same fraction per layer) and the network retrained with the mask fixed.
    Multiplications are counted in the Winograd domain: per tile, input channel and 4x4 position,
    one multiplication per nonzero U with a nonzero transformed input (``ops_json``:
    ``mults_winograd_nonzero``; ``mults_winograd_dense`` without skipping; ``macs_direct`` for the
    same layers as direct convolution).
Real: storage. The nonzero U (and every other tensor) are stored in the sparse format
(``SparseFloat``), measured and decoded by the harness.
Simulated: compute. The Winograd layers run as dense PyTorch tensor ops (einsum over tiles), no
sparse Winograd kernel exists in torch; the zero-skipping multiplication counts are counted, not timed.
Deviations: one prune-and-retrain round for the fine-tuning budget (the paper prunes iteratively
and retrains for many epochs); the first conv (reading the image) stays direct, as ReLU cannot move
into its input; BatchNorm after each Winograd layer stays in the spatial domain.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import fx, nn

from mcbench.methods.encoding import container
from mcbench.methods.flows import prune
from mcbench.methods.protocols import (Compressed, EncodedModel, MethodContext, PruningMethod, StepInfo,
                                       TrainHooks)
from mcbench.methods.registry import register

BT = torch.tensor([[1.0, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
G = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
AT = torch.tensor([[1.0, 1, 1, 0], [0, 1, -1, -1]])


def weight_transform(g: torch.Tensor) -> torch.Tensor:
    """U = G g G^T for 3x3 kernels g (O, C, 3, 3) -> (O, C, 4, 4)."""
    Gm = G.to(g)
    return Gm @ g @ Gm.T


def input_tiles(x: torch.Tensor) -> torch.Tensor:
    """V = B^T d B for every overlapping 4x4 tile (stride 2) of the zero-padded input: (N, C, th, tw, 4, 4)."""
    _, _, h, w = x.shape
    th, tw = math.ceil(h / 2), math.ceil(w / 2)
    xp = F.pad(x, (1, 2 * tw + 1 - w, 1, 2 * th + 1 - h))
    d = xp.unfold(2, 4, 2).unfold(3, 4, 2)
    Bt = BT.to(x)
    return Bt @ d @ Bt.T


def winograd_conv(x: torch.Tensor, u: torch.Tensor, relu_in: bool = False) -> torch.Tensor:
    """F(2x2, 3x3) convolution (stride 1, padding 1) with Winograd-domain weights ``u`` (O, C, 4, 4)."""
    n, _, h, w = x.shape
    v = input_tiles(x)
    if relu_in:
        v = torch.relu(v)
    m = torch.einsum("nctwij,ocij->notwij", v, u)
    At = AT.to(x)
    y = At @ m @ At.T                                                # (N, O, th, tw, 2, 2)
    return y.permute(0, 1, 2, 4, 3, 5).reshape(n, u.shape[0], 2 * v.shape[2], 2 * v.shape[3])[:, :, :h, :w]


class WinogradReLUConv(nn.Module):
    """A 3x3 conv computed in the Winograd domain, with ReLU on the transformed input tiles."""

    def __init__(self, conv: nn.Conv2d, relu_in: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight_transform(conv.weight.detach()).clone())
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())
        self.relu_in = relu_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = winograd_conv(x, self.weight, self.relu_in)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


def convertible(conv: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def relu_feeding(model: nn.Module) -> dict[str, str]:
    """Convertible conv name -> the ReLU module whose output reaches it through max-pools only (fx trace)."""
    gm = fx.symbolic_trace(model)
    mods = dict(gm.named_modules())
    out = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or not convertible(mods[node.target]):
            continue
        cur = node.args[0]
        while isinstance(cur, fx.Node) and cur.op == "call_module" and isinstance(mods[cur.target], nn.MaxPool2d) \
                and len(cur.users) == 1:
            cur = cur.args[0]
        if isinstance(cur, fx.Node) and cur.op == "call_module" and isinstance(mods[cur.target], nn.ReLU) \
                and len(cur.users) == 1:
            out[node.target] = cur.target
    return out


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def to_winograd_relu(model: nn.Module) -> list[str]:
    """In place: each conv fed by a ReLU (through max-pools) -> ``WinogradReLUConv``; that ReLU removed
    (max-pool commutes with ReLU, so the ReLU now acts on the Winograd tiles instead). Returns their names."""
    pairs = relu_feeding(model)
    for conv_name, relu_name in pairs.items():
        _set(model, conv_name, WinogradReLUConv(model.get_submodule(conv_name), relu_in=True))
        _set(model, relu_name, nn.Identity())
    return list(pairs)


def winograd_ops(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Multiplications of the Winograd layers over the batch: dense, zero-skipping (nonzero U x nonzero
    ReLU(V)), and the direct-convolution MACs of the same layers."""
    tot = {"mults_winograd_dense": 0.0, "mults_winograd_nonzero": 0.0, "macs_direct": 0.0}

    def hook(m, inp, out):
        v = input_tiles(inp[0])
        if m.relu_in:
            v = torch.relu(v)
        nz_u = (m.weight != 0).sum(0).to(v.dtype)                    # (C, 4, 4): output channels per position
        tot["mults_winograd_nonzero"] += float(((v != 0).to(v.dtype) * nz_u[None, :, None, None]).sum())
        tot["mults_winograd_dense"] += float(v[..., :1, :1].numel() * 16 * m.weight.shape[0])
        tot["macs_direct"] += float(out.numel() * m.weight.shape[1] * 9)

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, WinogradReLUConv)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hs:
            h.remove()
    return tot


@torch.no_grad()
def winograd_masks(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """Per Winograd layer, keep-mask dropping the ``sparsity`` fraction of U with the smallest |U|."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, WinogradReLUConv):
            u = m.weight.abs().flatten()
            k = int(sparsity * u.numel())
            keep = torch.ones_like(u, dtype=torch.bool)
            if k:
                keep[torch.topk(u, k, largest=False).indices] = False
            out[name] = keep.view_as(m.weight)
    return out


def train_winograd_masked(ctx: MethodContext, model: nn.Module, masks: dict[str, torch.Tensor], epochs: int):
    mods = dict(model.named_modules())

    @torch.no_grad()
    def apply(*_a) -> None:
        for n, k in masks.items():
            mods[n].weight.mul_(k.to(mods[n].weight.device))

    @torch.no_grad()
    def before_step(m: nn.Module, info: StepInfo) -> None:
        for n, k in masks.items():
            w = mods[n].weight
            dead = ~k.to(w.device)
            if w.grad is not None:
                w.grad.masked_fill_(dead, 0)
            for v in (info.optimizer.state.get(w, {}).values() if info.optimizer else ()):
                if torch.is_tensor(v) and v.shape == w.shape:
                    v.masked_fill_(dead, 0)

    apply()
    report = ctx.train_fn(model, epochs=epochs, stage="winograd-retrain",
                          hooks=TrainHooks(before_step=before_step, after_step=apply))
    apply()
    return report


@register(family="pruning")
class liu2018efficient(PruningMethod):
    structured = False

    @dataclass
    class Config:
        sparsity: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.7      # fraction of Winograd-domain weights pruned
        sparsity_control: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9  # a second level (0: none)

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        return prune.at_levels(lambda s: self._run(ctx, s), "sparsity", c.sparsity, c.sparsity_control)

    def _run(self, ctx: MethodContext, sparsity: float) -> Compressed:
        model = copy.deepcopy(ctx.load_baseline()).to(ctx.device)
        names = to_winograd_relu(model)
        model = model.to(ctx.device)
        masks = winograd_masks(model, sparsity)
        report = train_winograd_masked(ctx, model, masks, ctx.epochs_finetune)
        model = model.cpu().eval()

        def build() -> nn.Module:
            m = ctx.build_baseline()
            to_winograd_relu(m)
            return m

        plan = {f"{n}.weight": container.SparseFloat(8) for n in names}
        encoded = EncodedModel(encode=lambda m: container.encode_model(m.cpu(), plan),
                               decode=lambda b: container.decode_model(b, build),
                               format="Winograd-domain weights as sparse float32 + Huffman-coded relative indices")
        dens = sum(int(k.sum()) for k in masks.values()) / max(1, sum(k.numel() for k in masks.values()))
        return Compressed(model, real=False, storage_real=True, compute_real=False, encoded=encoded,
                          count_ops=winograd_ops, train_report=report,
                          note=f"Winograd-ReLU layers ({len(names)}), {sparsity:.0%} of Winograd-domain weights "
                               "pruned; storage real (sparse file), compute simulated (dense einsum; zero-skipping "
                               "multiplications counted in ops_json)",
                          extra={"winograd_layers": names, "winograd_weight_density": dens})
