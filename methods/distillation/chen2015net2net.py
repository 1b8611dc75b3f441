"""Net2Net: Accelerating Learning via Knowledge Transfer.

Chen, Goodfellow, Shlens (2015/ICLR 2016), arXiv:1511.05641. Key: chen2015net2net.
Implements the function-preserving transformations of Section 2 on the task CNN:
    Net2WiderNet (Section 2.2): layer i widened from n to q units with the random mapping
        g(j) = j for j <= n, g(j) uniform in {1..n} for j > n;
        U^(i)_{k,j} = W^(i)_{k,g(j)},   U^(i+1)_{j,h} = W^(i+1)_{g(j),h} / |{x : g(x) = g(j)}|.
        Batch normalisation (Section 2.2, last paragraph): a new channel copies the scale, shift and
        running statistics of the channel it replicates, so the BN output is replicated too.
    Net2DeeperNet (Section 2.3): a layer h^(i) = phi(U^(i)T h^(i-1)) inserted with U^(i) = I (a
        3x3 convolution whose kernel is the identity); phi = ReLU keeps a non-negative input
        unchanged. Its BN is set to undo the normalisation: running mean/var from calibration
        batches, gamma = sqrt(var + eps), beta = mean (identity in eval mode).
    Knowledge transfer, not compression: the task's student, trained (cached), is grown into a
    larger network (default: the baseline's widths) and trained further; it is compared with
    that network trained from scratch (the ``baseline`` reference row when only widened).
Real: the larger network and its training. Simulated: nothing.
Deviations: noise of ``noise_std`` times the layer's weight std is added to replicated incoming
weights to break symmetry (the paper adds noise too, without a value); with ``noise_std = 0`` the
grown network computes exactly the student's function (tested). The grown network trains for the
fine-tuning budget (``epochs_finetune``) by default; the paper compares training curves, here the
validation accuracy per epoch is kept in the row. Only the task CNN (conv-BN-ReLU stages, global
pooling, one linear layer) is supported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from mcbench.methods.flows.distill import compressed
from mcbench.methods.protocols import Compressed, DistillationMethod, MethodContext
from mcbench.methods.registry import register


def _stage_layers(model: nn.Module, k: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """The last conv and BN of stage k (a conv-BN-ReLU block, or a Sequential of them)."""
    stage = getattr(model, f"stage{k}")
    convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)]
    if not convs or len(convs) != len(bns):
        raise ValueError(f"stage{k} is not a conv-BN-ReLU stage of the task CNN")
    return convs[-1], bns[-1]


def _consumer(model: nn.Module, k: int) -> nn.Module:
    """The layer that reads stage k's output: the first conv of stage k+1, or the classifier."""
    if k < model.n_stages:
        return next(m for m in getattr(model, f"stage{k + 1}").modules() if isinstance(m, nn.Conv2d))
    return model.fc


def random_mapping(n: int, q: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """g: {0..q-1} -> {0..n-1}, identity on the first n units, uniform on the new ones."""
    if q < n:
        raise ValueError(f"Net2WiderNet widens: {q} units < {n}")
    return torch.cat([torch.arange(n), torch.randint(0, n, (q - n,), generator=generator)])


@torch.no_grad()
def widen_stage(model: nn.Module, k: int, width: int, *, noise_std: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Net2WiderNet on stage k's last conv (in place); returns the mapping g."""
    conv, bn = _stage_layers(model, k)
    nxt = _consumer(model, k)
    n = conv.out_channels
    g = random_mapping(n, width, generator).to(conv.weight.device)   # drawn on the CPU generator
    counts = torch.bincount(g, minlength=n).to(conv.weight.dtype)
    new_conv = nn.Conv2d(conv.in_channels, width, conv.kernel_size, conv.stride, conv.padding,
                         bias=conv.bias is not None).to(conv.weight.device)
    new_conv.weight.copy_(conv.weight[g])
    if conv.bias is not None:
        new_conv.bias.copy_(conv.bias[g])
    if noise_std > 0 and width > n:
        new = new_conv.weight[n:]
        new.add_(torch.randn(new.shape, generator=generator).to(new.device) * noise_std * conv.weight.std())
    new_bn = nn.BatchNorm2d(width, eps=bn.eps, momentum=bn.momentum).to(conv.weight.device)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new_bn, name).copy_(getattr(bn, name)[g])
    new_bn.num_batches_tracked.copy_(bn.num_batches_tracked)
    scale = (1.0 / counts[g])
    if isinstance(nxt, nn.Linear):
        new_next = nn.Linear(width, nxt.out_features, bias=nxt.bias is not None).to(conv.weight.device)
        new_next.weight.copy_(nxt.weight[:, g] * scale.view(1, -1))
    else:
        new_next = nn.Conv2d(width, nxt.out_channels, nxt.kernel_size, nxt.stride, nxt.padding,
                             bias=nxt.bias is not None).to(conv.weight.device)
        new_next.weight.copy_(nxt.weight[:, g] * scale.view(1, -1, 1, 1))
    if nxt.bias is not None:
        new_next.bias.copy_(nxt.bias)
    _replace(model, conv, new_conv)
    _replace(model, bn, new_bn)
    _replace(model, nxt, new_next)
    return g


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for name, m in model.named_modules():
        for child_name, child in m.named_children():
            if child is old:
                setattr(m, child_name, new)
                return
    raise ValueError("module to replace not found")


def identity_block(channels: int, inputs: torch.Tensor | None, eps: float = 1e-5) -> nn.Sequential:
    """Conv3x3 = identity, BN undoing its normalisation (statistics of ``inputs``), ReLU (Section 2.3)."""
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    bn = nn.BatchNorm2d(channels, eps=eps)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[torch.arange(channels), torch.arange(channels), 1, 1] = 1.0
        if inputs is not None:
            mean = inputs.mean((0, 2, 3))
            var = inputs.var((0, 2, 3), unbiased=False)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.weight.copy_(torch.sqrt(var + eps))
            bn.bias.copy_(mean)
        else:  # fresh statistics: mean 0, var 1
            bn.weight.fill_(float(torch.sqrt(torch.tensor(1.0 + eps))))
    return nn.Sequential(conv, bn, nn.ReLU(inplace=True))


@torch.no_grad()
def deepen_stage(model: nn.Module, k: int, calibration: list[torch.Tensor] | None = None) -> None:
    """Net2DeeperNet: an identity conv-BN-ReLU block appended to stage k (in place)."""
    stage = getattr(model, f"stage{k}")
    _, bn = _stage_layers(model, k)
    outputs = None
    if calibration:
        captured: list[torch.Tensor] = []
        handle = stage.register_forward_hook(lambda _m, _i, o: captured.append(o.detach().clone()))
        was_training = model.training
        model.eval()
        for x in calibration:
            model(x)
        model.train(was_training)
        handle.remove()
        outputs = torch.cat(captured)
    block = identity_block(bn.num_features, outputs, bn.eps).to(bn.weight.device)
    setattr(model, f"stage{k}", nn.Sequential(stage, block))


def stage_widths(model: nn.Module) -> list[int]:
    return [_stage_layers(model, k)[0].out_channels for k in range(1, model.n_stages + 1)]


@register(family="distillation")
class chen2015net2net(DistillationMethod):
    @dataclass
    class Config:
        target: Literal["baseline", "teacher"] = "baseline"   # grow to this role's widths
        deeper: bool = False                                  # also add an identity block to every stage
        noise_std: Annotated[float, Field(ge=0)] = 0.01       # noise on replicated weights, x the layer's std
        epochs: Literal["finetune", "scratch"] = "finetune"   # training budget of the grown network

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        model = ctx.load_student().to(ctx.device)
        target = stage_widths(ctx.build_arch(c.target))
        before = stage_widths(model)
        if len(target) != len(before):
            raise ValueError(f"student stages {before} and {c.target} stages {target} differ in number")
        val_student = ctx.evaluate(model)
        gen = torch.Generator().manual_seed(ctx.seed)
        for k, width in enumerate(target, start=1):
            if width > before[k - 1]:
                widen_stage(model, k, width, noise_std=c.noise_std, generator=gen)
        if c.deeper:
            calib = [x.to(ctx.device) for x in ctx.calibration_batches()]
            for k in range(1, len(target) + 1):
                deepen_stage(model, k, calib)
        val_grown = ctx.evaluate(model)
        epochs = ctx.epochs_finetune if c.epochs == "finetune" else ctx.epochs_scratch
        report = ctx.train_fn(model, epochs=epochs, stage="train_grown")
        return compressed(model, report, note=f"knowledge transfer, not compression: the trained student grown "
                                              f"(Net2WiderNet{' + Net2DeeperNet' if c.deeper else ''}) to "
                                              f"{stage_widths(model)} channels, then trained",
                          widths_before=before, widths_after=stage_widths(model), deeper=c.deeper,
                          val_top1_student_pct=val_student, val_top1_grown_before_training_pct=val_grown,
                          grown_val_acc_per_epoch=report.val_acc_per_epoch)
