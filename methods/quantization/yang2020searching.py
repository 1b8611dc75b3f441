"""Searching for Low-Bit Weights in Quantized Neural Networks (SLB).

Yang, Wang, Han, Xu, Xu, Tao, Xu (2020), NeurIPS 2020, arXiv:2009.08695. Key: yang2020searching.
Implements the search over discrete weights (Section 3):
    every weight of a quantized layer is a choice among the 2^b values V = {v_1 .. v_n} (uniform in [-1, 1]);
    it holds logits a (n per weight) and, in training, the continuous relaxation
        w_soft = sum_i softmax(a / tau)_i v_i                                     (Eq. 4-5)
    with the temperature tau annealed during training from ``tau_start`` to ``tau_end`` (exponentially in
    the step), so that the distribution approaches one-hot (Section 3.2);
    the deployed weight is the most probable value, w_q = v_{argmax_i a_i}                 (Eq. 6);
    state batch normalisation (Section 3.3): besides the continuous network's BN statistics, each BN keeps
    the statistics of the discrete-state network (a no-gradient forward pass with w_q on every training
    batch), and the deployed network uses those, so BN matches the weights it is deployed with.
The control ``ste`` is the straight-through estimator at the same bits and levels (w_q in the forward pass,
identity gradient to a latent float weight), trained for the same epochs: the paper's main comparison.
First and last layers stay float32 (as in the paper's experiments); quantized layers are followed by BN,
which absorbs the scale of V.
Real: storage. The encoded file holds each quantized layer's b-bit indices bit-packed with its codebook V;
the first conv, the classifier and BN stay float32. Simulated: compute (the values of V on float kernels).
Deviations: weights only, activations float32 (the paper's x/32 rows; its activation quantizer is not
implemented); fine-tuned from the trained baseline (logits initialised so that the relaxed weight starts
near the layer's normalised float weight) for the harness's fine-tuning epochs instead of trained from
scratch; AdamW + cosine schedule of the harness.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.encoding import container
from mcbench.methods.protocols import Compressed, EncodedModel, MethodContext, QuantizationMethod, StepInfo, TrainHooks
from mcbench.methods.quantization import _uniform as U
from mcbench.methods.registry import register


def levels(bits: int) -> torch.Tensor:
    """V: 2^bits values uniform in [-1, 1] ({-1, 1} at one bit, {-1, -1/3, 1/3, 1} at two)."""
    return torch.linspace(-1.0, 1.0, 2 ** bits)


def soft_weight(logits: torch.Tensor, values: torch.Tensor, tau: float) -> torch.Tensor:
    """sum_i softmax(a / tau)_i v_i over the last dimension (Eq. 4-5)."""
    return (F.softmax(logits / tau, dim=-1) * values).sum(-1)


def hard_weight(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """v_{argmax a}: the deployed weight (Eq. 6)."""
    return values[logits.argmax(dim=-1)]


def init_logits(w: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Logits -((w/max|w| - v_i) / spacing)^2: the distribution starts peaked near the normalised weight."""
    wn = w / w.abs().max().clamp(min=1e-12)
    spacing = float(values[1] - values[0])
    return -(((wn.unsqueeze(-1) - values) / spacing) ** 2)


def temperature(step: int, total: int, start: float, end: float) -> float:
    """tau annealed exponentially from ``start`` (step 0) to ``end`` (last step)."""
    return start * (end / start) ** (min(step, total) / max(total, 1))


class SearchConv(nn.Module):
    """A conv whose weights are searched: logits over V per weight; ``hard`` selects the discrete state."""

    def __init__(self, conv: nn.Conv2d, bits: int):
        super().__init__()
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.register_buffer("values", levels(bits).to(conv.weight.device))
        self.logits = nn.Parameter(init_logits(conv.weight.detach(), self.values))
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())
        self.tau, self.hard = 1.0, False

    def weight_now(self) -> torch.Tensor:
        return hard_weight(self.logits, self.values) if self.hard else soft_weight(self.logits, self.values, self.tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight_now(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class StateBN(nn.BatchNorm2d):
    """BN with a second set of running statistics for the discrete-state network (Section 3.3).

    Training: the continuous pass normalises with batch statistics and updates ``running_*``; the
    discrete pass (``hard``) normalises with its own batch statistics and updates ``state_*``.
    Eval: normalised with ``state_*`` (the deployed, discrete network's statistics).
    """

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        self.load_state_dict(bn.state_dict())
        self.register_buffer("state_mean", bn.running_mean.detach().clone())
        self.register_buffer("state_var", bn.running_var.detach().clone())
        self.hard = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.state_mean, self.state_var, self.weight, self.bias, False, 0.0, self.eps)
        if self.hard:
            return F.batch_norm(x, self.state_mean, self.state_var, self.weight, self.bias, True, self.momentum,
                                self.eps)
        return super().forward(x)


class SearchNet(nn.Module):
    """Training forward = a no-gradient discrete-state pass (state BN statistics) + the continuous pass."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def _set(self, hard: bool) -> None:
        for m in self.body.modules():
            if isinstance(m, (SearchConv, StateBN)):
                m.hard = hard

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            self._set(True)
            return self.body(x)
        with torch.no_grad():
            self._set(True)
            self.body(x)
        self._set(False)
        return self.body(x)


def searched_layers(model: nn.Module) -> list[str]:
    """Every conv but the first (first and last layers stay float); each must be followed by a BN."""
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return convs[1:]


def _bn_after(model: nn.Module, conv_names: list[str]) -> dict[str, str]:
    """conv name -> the BN that follows it in module order."""
    names = [n for n, _ in model.named_modules()]
    mods = dict(model.named_modules())
    out = {}
    for c in conv_names:
        following = [n for n in names[names.index(c) + 1:] if isinstance(mods[n], (nn.BatchNorm2d, nn.Conv2d))]
        if not following or not isinstance(mods[following[0]], nn.BatchNorm2d):
            raise ValueError(f"yang2020searching: conv {c!r} is not followed by a BatchNorm2d (state BN needs one)")
        out[c] = following[0]
    return out


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def search_model(model: nn.Module, bits: int) -> SearchNet:
    model = copy.deepcopy(model)
    convs = searched_layers(model)
    bns = _bn_after(model, convs)
    for c in convs:
        _replace(model, c, SearchConv(model.get_submodule(c), bits))
        _replace(model, bns[c], StateBN(model.get_submodule(bns[c])))
    return SearchNet(model)


@torch.no_grad()
def deploy(net: SearchNet, build) -> nn.Module:
    """The plain architecture with w_q = v_argmax in searched layers and the state BN statistics."""
    model = build()
    state = {}
    for name, m in net.body.named_modules():
        if isinstance(m, SearchConv):
            state[f"{name}.weight"] = hard_weight(m.logits, m.values)
            if m.bias is not None:
                state[f"{name}.bias"] = m.bias
        elif isinstance(m, StateBN):
            for k in ("weight", "bias", "num_batches_tracked"):
                state[f"{name}.{k}"] = getattr(m, k)
            state[f"{name}.running_mean"], state[f"{name}.running_var"] = m.state_mean, m.state_var
    for k, v in net.body.state_dict().items():
        if k not in state and not k.endswith((".logits", ".values", ".state_mean", ".state_var")):
            state[k] = v
    model.load_state_dict(state, strict=True)
    return model.eval()


class _NearestSTE(nn.Module):
    """Parametrization for the STE control: w -> nearest v in V of w/s (s fixed from the trained layer), times s."""

    def __init__(self, values: torch.Tensor, scale: float):
        super().__init__()
        self.register_buffer("values", values)
        self.scale = scale

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        wn = (w.detach() / self.scale).clamp(-1, 1)
        q = self.values[(wn.unsqueeze(-1) - self.values).abs().argmin(-1)]
        return U.straight_through(w, q)


@register(family="quantization")
class yang2020searching(QuantizationMethod):
    from_scratch = False

    @dataclass
    class Config:
        weight_bits: Annotated[int, Field(ge=1, le=4)] = 2
        tau_start: Annotated[float, Field(gt=0.0)] = 1.0
        tau_end: Annotated[float, Field(gt=0.0)] = 0.01
        ste_control: bool = True            # the straight-through estimator at the same bits, same epochs

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        baseline = ctx.load_baseline().to(ctx.device)
        net = search_model(baseline, c.weight_bits).to(ctx.device)
        convs = [m for m in net.modules() if isinstance(m, SearchConv)]

        def anneal(model: nn.Module, info: StepInfo) -> None:
            for m in convs:
                m.tau = temperature(info.step, info.total_steps, c.tau_start, c.tau_end)

        report = ctx.train_fn(net, epochs=max(1, ctx.epochs_finetune), hooks=TrainHooks(after_step_info=anneal),
                              stage="search")
        out = self._compressed(deploy(net, ctx.build_baseline), ctx, report, "searched (SLB, state BN)")
        if c.ste_control:
            model, ste_report = self._ste(baseline, ctx)
            out.controls["ste"] = self._compressed(model, ctx, ste_report, "straight-through estimator")
        return out

    def _ste(self, baseline: nn.Module, ctx: MethodContext):
        from torch.nn.utils import parametrize
        model = copy.deepcopy(baseline)
        values = levels(self.config.weight_bits).to(ctx.device)
        for name in searched_layers(model):
            conv = model.get_submodule(name)
            scale = float(conv.weight.detach().abs().max().clamp(min=1e-12))
            parametrize.register_parametrization(conv, "weight", _NearestSTE(values, scale))
        report = ctx.train_fn(model, epochs=max(1, ctx.epochs_finetune), stage="ste")
        for name in searched_layers(model):           # deployed weights: s * V (2^b values per layer)
            parametrize.remove_parametrizations(model.get_submodule(name), "weight", leave_parametrized=True)
        return model.eval(), report

    def _compressed(self, model: nn.Module, ctx: MethodContext, report, how: str) -> Compressed:
        bits = self.config.weight_bits
        layers = set(searched_layers(model))
        plan = lambda m: {f"{n}.weight": container.Codebook(bits) for n in layers}  # noqa: E731
        encoded = EncodedModel(encode=lambda m: container.encode_model(m, plan(m)),
                               decode=lambda b: container.decode_model(b, ctx.build_baseline),
                               format=f"{bits}-bit indices into V per searched layer (bit-packed); first conv, "
                                      "classifier and BN float32")
        n_all = sum(m.weight.numel() for m in model.modules() if isinstance(m, U.QUANT_LAYERS))
        n_q = sum(model.get_submodule(n).weight.numel() for n in layers)
        bpw = (n_q * bits + (n_all - n_q) * 32) / max(n_all, 1)
        return Compressed(model, real=False, storage_real=True, compute_real=False, encoded=encoded,
                          train_report=report, bits_per_weight=float(bpw),
                          note=f"{how}: {bits}-bit weights in V (first/last layers float32), float activations: "
                               "storage real (bit-packed indices in the encoded file); compute simulated "
                               "(float kernels)",
                          extra={"weight_bits_searched_layers": bits, "activation_bits": 32,
                                 "bits_per_weight_quantized_layers": bits,
                                 "full_precision_layers": [n for n, _ in U.quant_layers(model) if n not in layers],
                                 "levels": levels(bits).tolist(), "recipe": how})

