"""XNOR-Net: ImageNet Classification Using Binary Convolutional Neural Networks.

Rastegari, Ordonez, Redmon, Farhadi (2016), arXiv:1603.05279 (ECCV 2016). Key: rastegari2016xnor.
Implements both networks of the paper:
    Binary-Weight-Networks (Section 3.1): W ~ alpha * sign(W), alpha = ||W||_l1 / n per output filter
        (Eq. 4, 6); the gradient flows through alpha and through sign by the straight-through estimator
        cancelled where |W| > 1 (Eq. 7 with Hinton's STE, as in the paper);
    XNOR-Networks (Section 3.2): inputs binarized too, I * W ~ (sign(I) (*) sign(W)) . K alpha (Eq. 11),
        K = A * k, A = mean over channels of |I|, k a box filter of the kernel's size (Fig. 2);
        block order BNorm -> BinActiv -> BinConv -> Pool (Section 3.2, Fig. 3).
    The first and last weight layers stay full precision (Section 4, as the paper keeps them).
Real: storage (both variants): the encoded file holds each binary layer's sign bits packed at 1 bit plus
one float32 alpha per filter; first/last layers, BN and biases stay float32. Compute, XNOR variant: the
deployed binary layers run a packed-bit XNOR-popcount kernel (``_xnor_kernel.py``, C++ through
``torch.utils.cpp_extension``, compiled once per machine): inputs and weights packed 64 channels to a
word, dot products by XNOR + popcount, then scaled by alpha and K in float. It computes exactly the float
binary forward (tested). If no compiler is available the float simulation is deployed and the row says
compute simulated. Compute, BWN variant: simulated (+/-alpha weights on float kernels).
Simulated: BWN compute (+/-alpha weights on float kernels); XNOR compute when the kernel cannot be built;
training in both variants (float sign with a straight-through estimator).
Deviations: the task's CNN instead of AlexNet/ResNet-18; AdamW + cosine schedule; no ReLU after the
binary convolution (Fig. 3's order; the authors' Torch code adds one); the kernel is a direct packed
convolution without the paper's GPU implementation, and first/last layers run float kernels.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mcbench.methods.binarization import _xnor_kernel
from mcbench.methods.binarization.courbariaux2016binarized import binarize
from mcbench.methods.encoding import container
from mcbench.methods.ops import nonzero_macs, tally
from mcbench.methods.protocols import BinarizationMethod, Compressed, EncodedModel, MethodContext, TrainHooks
from mcbench.methods.registry import register

BINARY = (nn.Conv2d, nn.Linear)


def filter_alpha(w: torch.Tensor) -> torch.Tensor:
    """alpha = ||W||_l1 / n per output filter (Eq. 6), shaped to broadcast over the weight."""
    return w.abs().flatten(1).mean(dim=1).view(-1, *([1] * (w.dim() - 1)))


def sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where x >= 0, -1 elsewhere (the convention of the packed kernel's bits)."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class _BinaryLayer:
    """Shared by the BWN and XNOR layers: binary weights with a per-filter scaling factor."""

    binary_input: bool = False
    # deployed form: weight holds sign(W) (+/-1) and ``alpha`` the factors; training form: latent W
    deployed: bool = False

    def scaled_weight(self) -> torch.Tensor:
        if self.deployed:
            return self.weight * self.alpha.view(-1, *([1] * (self.weight.dim() - 1)))
        return filter_alpha(self.weight) * binarize(self.weight)

    @torch.no_grad()
    def freeze(self) -> None:
        """Latent weights -> sign(W) in ``weight`` and alpha in a buffer (the stored form)."""
        alpha = filter_alpha(self.weight).flatten().clone()
        self.weight.copy_(sign(self.weight))
        self.register_buffer("alpha", alpha)
        self.deployed = True


class XnorConv2d(_BinaryLayer, nn.Conv2d):
    """BinActiv + BinConv of Fig. 3 (``binary_input``) or a BWN convolution."""

    use_kernel: bool = False

    def input_scale(self, x: torch.Tensor) -> torch.Tensor:
        """K = A * k: mean |I| over channels, box-filtered over the kernel window (Fig. 2)."""
        a = x.abs().mean(dim=1, keepdim=True)
        return F.avg_pool2d(a, self.kernel_size, self.stride, self.padding, count_include_pad=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.binary_input:
            return self._conv_forward(x, self.scaled_weight(), self.bias)
        k = self.input_scale(x)
        if self.use_kernel and self.deployed and _xnor_kernel.serves(x):
            out = _xnor_kernel.layer_forward(self, x, self.alpha) * k
        else:
            w = self.weight if self.deployed else binarize(self.weight)
            alpha = self.alpha.view(-1, 1, 1, 1) if self.deployed else filter_alpha(self.weight)
            out = self._conv_forward(binarize(x), w, None) * alpha.view(1, -1, 1, 1) * k
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


class XnorLinear(_BinaryLayer, nn.Linear):
    use_kernel: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.binary_input:
            return F.linear(x, self.scaled_weight(), self.bias)
        beta = x.abs().mean(dim=1, keepdim=True)          # K of a fully connected layer: one factor per input
        if self.use_kernel and self.deployed and _xnor_kernel.serves(x):
            out = _xnor_kernel.layer_forward(self, x, self.alpha) * beta
        else:
            w = self.weight if self.deployed else binarize(self.weight)
            alpha = self.alpha if self.deployed else filter_alpha(self.weight).flatten()
            out = F.linear(binarize(x), w) * alpha * beta
        return out if self.bias is None else out + self.bias


def _binary_twin(layer: nn.Module, binary_input: bool) -> nn.Module:
    if isinstance(layer, nn.Conv2d):
        new = XnorConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                         layer.dilation, layer.groups, layer.bias is not None)
    else:
        new = XnorLinear(layer.in_features, layer.out_features, layer.bias is not None)
    new.load_state_dict(layer.state_dict())
    new.binary_input = binary_input
    return new


def _bn_for(layer: nn.Module) -> nn.Module:
    return nn.BatchNorm2d(layer.in_channels) if isinstance(layer, nn.Conv2d) else nn.BatchNorm1d(layer.in_features)


def xnor_model(model: nn.Module, variant: str) -> nn.Module:
    """The paper's network from a task model: every weight layer but the first and last binarized.

    ``xnor``: in each Sequential, a block ``layer [BN] [ReLU]`` becomes ``BN(in) -> BinActiv+BinConv``
    (Fig. 3); ``bwn``: each layer is swapped for its binary-weight twin, the block order kept.
    """
    model = copy.deepcopy(model)
    layers = [n for n, m in model.named_modules() if isinstance(m, BINARY)]
    inner = set(layers[1:-1])
    for name, seq in list(model.named_modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq.children())
        out, i = [], 0
        while i < len(children):
            child = children[i]
            cname = f"{name}.{i}" if name else str(i)
            if isinstance(child, BINARY) and cname in inner:
                if variant == "bwn":
                    out.append(_binary_twin(child, binary_input=False))
                    i += 1
                    continue
                j = i + 1
                while j < len(children) and isinstance(children[j], (nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU)):
                    j += 1
                out += [_bn_for(child), _binary_twin(child, binary_input=True)]
                i = j
            else:
                out.append(child)
                i += 1
        for k in list(seq._modules):
            del seq._modules[k]
        for k, m in enumerate(out):
            seq.add_module(str(k), m)
    left = [n for n, m in model.named_modules() if type(m) in BINARY and n not in (layers[0], layers[-1])]
    if left:
        raise ValueError(f"xnor_model: layers outside an nn.Sequential block cannot be binarized: {left}")
    return model


def binary_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (XnorConv2d, XnorLinear))]


def deployed_model(model: nn.Module, use_kernel: bool) -> nn.Module:
    model = copy.deepcopy(model).eval()
    for _, m in binary_layers(model):
        m.freeze()
        m.use_kernel = use_kernel and m.binary_input
        m.runs_packed_kernel = m.use_kernel
    return model


def encoding_plan(model: nn.Module) -> dict[str, container.Codec]:
    return {f"{n}.weight": container.Codebook(1) for n, _ in binary_layers(model)}


def layer_ops(layer: nn.Module, x: torch.Tensor, out: torch.Tensor) -> dict[str, float] | None:
    if not isinstance(layer, (XnorConv2d, XnorLinear)):
        return None
    macs = nonzero_macs(layer, x, inputs=False)["macs_dense"]
    outputs = out.numel()
    if layer.binary_input:   # XNOR + popcount per MAC; alpha and K: two multiplications per output
        return {"xnor_popcount_macs": macs, "multiplications": 2.0 * outputs}
    return {"additions": macs, "multiplications": float(outputs)}   # BWN: +/-I summed, one alpha per output


@register(family="binarization")
class rastegari2016xnor(BinarizationMethod):
    from_scratch = True

    @dataclass
    class Config:
        variant: Literal["xnor", "bwn"] = "xnor"
        packed_kernel: bool = True      # deploy XNOR layers on the XNOR-popcount kernel when it builds
        clip_latent_weights: bool = True

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        return xnor_model(model, self.config.variant)

    def hooks(self, ctx: MethodContext) -> TrainHooks | None:
        if not self.config.clip_latent_weights:
            return None

        @torch.no_grad()
        def clip(model: nn.Module, step: int, total: int) -> None:
            for _, m in binary_layers(model):
                m.weight.clamp_(-1.0, 1.0)

        return TrainHooks(after_step=clip)

    def convert(self, model: nn.Module, ctx: MethodContext) -> Compressed:
        variant = self.config.variant
        kernel = variant == "xnor" and self.config.packed_kernel and _xnor_kernel.load() is not None
        deployed = deployed_model(model.cpu(), kernel)
        variant_of = self.config.variant

        def decode(data: bytes) -> nn.Module:
            fresh = deployed_model(xnor_model(ctx.build_baseline(), variant_of), kernel)
            fresh.load_state_dict(container.decode_state(data), strict=True)
            return fresh.eval()

        encoded = EncodedModel(encode=lambda m: container.encode_model(m, encoding_plan(m)), decode=decode,
                               format="1-bit packed sign weights + float32 alpha per filter; first/last layers, "
                                      "BN and biases float32")
        names = [n for n, m in deployed.named_modules() if isinstance(m, BINARY)]
        fp = [n for n in names if n not in dict(binary_layers(deployed))]
        n_bin = sum(m.weight.numel() for _, m in binary_layers(deployed))
        n_all = sum(p.numel() for p in deployed.parameters())
        effective = (n_bin + 32.0 * (n_all - n_bin)) / n_all
        why_not = "" if kernel or variant == "bwn" else f" (kernel unavailable: {_xnor_kernel.load_error() or 'disabled'})"
        compute = ("compute real: binary layers run the packed XNOR-popcount kernel" if kernel
                   else f"compute simulated: +/-1 values on float kernels{why_not}")
        return Compressed(
            deployed, real=kernel, storage_real=True, compute_real=kernel, encoded=encoded,
            count_ops=lambda m, x: tally(m, x, layer_ops), bits_per_weight=effective,
            note=f"{'XNOR-Net' if variant == 'xnor' else 'Binary-Weight-Network'}: storage real (1-bit packed "
                 f"weights + alpha per filter, first/last layers float32); {compute}",
            extra={"variant": variant, "full_precision_layers": fp, "bits_per_weight_quantized_layers": 1.0,
                   "activation_bits_binary_layers": 1 if variant == "xnor" else 32,
                   "packed_kernel": kernel, "kernel_error": "" if kernel else _xnor_kernel.load_error()})
