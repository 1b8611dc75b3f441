"""The harness's training loop: in-memory tensors, AdamW + cosine, selection on validation.

``make_train_fn`` binds a task's data and recipe into the ``TrainFn`` that
methods receive. Selection rule: after every epoch the model is scored on the
validation split; the epoch with the best validation top-1 (among epochs the
method marks selectable; ties keep the earlier epoch) is restored at the end.
The test split is never seen here.

Training numerics (the recipe's ``precision`` and ``memory_format``, narrowed per method by
``Method.train_autocast`` / ``Method.train_channels_last``; both are on the row and in its hash):
channels_last puts the model's 4-D weights and every 4-D batch in NHWC during training only (the
model is handed back contiguous, so method code after training sees ordinary tensors); ``bf16`` /
``fp16`` run forward and loss under ``torch.autocast`` (fp16 with a gradient scaler), parameters and
optimizer state stay fp32.
"""
from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from contextlib import nullcontext

from mcbench.benchmarks.tasks import Recipe
from mcbench.methods.protocols import LossFn, ModelOutput, OptimizerFactory, StepInfo, TrainHooks, TrainReport

SELECTION_RULE = "best validation top-1 over epochs (ties: earlier epoch); test split never used"
DATA_FREE_SELECTION_RULE = "last epoch (data-free: no real data selects the model); test split never used"


@torch.no_grad()
def accuracy_pct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
                 device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy in percent, evaluated in eval mode, batched."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        xb = x[i:i + batch_size].to(device)
        correct += (model(xb).argmax(1).cpu() == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    return 100.0 * correct / max(1, len(y))


class FeatureTap:
    """Captures the outputs of named sub-modules during forward (for feature distillation)."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]):
        self.features: dict[str, torch.Tensor] = {}
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f"feature layers {missing} not found in {type(model).__name__}")
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str):
        def fn(_m, _inp, out):
            self.features[name] = out
        return fn

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def default_loss(student: ModelOutput, targets: torch.Tensor | None, teacher: ModelOutput | None) -> torch.Tensor:
    if targets is None:
        raise ValueError("the default loss (cross-entropy) needs labels: pass labels= with inputs=, or a loss")
    return F.cross_entropy(student.logits, targets)


@dataclass
class TrainData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


class RealDataWithheld(ValueError):
    """Raised when a data-free run asks to train on the real training split."""


def _taps(model: nn.Module, names: list[str]) -> FeatureTap | None:
    return FeatureTap(model, tuple(dict.fromkeys(names))) if names else None


PRECISIONS = ("fp32", "bf16", "fp16")
MEMORY_FORMATS = ("contiguous", "channels_last")


def check_numerics(precision: str, memory_format: str, device: torch.device | str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, not {memory_format!r}")
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise ValueError("precision fp16 needs --device cuda (CPU autocast supports bf16)")


def _autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _to_format(t: torch.Tensor, memory_format: str) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last) if memory_format == "channels_last" and t.dim() == 4 else t


def _set_format(modules: list[nn.Module | None], memory_format: str) -> None:
    """Lay out every 4-D parameter and buffer in ``memory_format`` (others untouched: ``Module.to`` would
    refuse a 5-D parameter, e.g. yang2020searching's per-weight value logits)."""
    fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    for m in modules:
        if m is None:
            continue
        for t in itertools.chain(m.parameters(), m.buffers()):
            if t.dim() == 4:
                t.data = t.data.contiguous(memory_format=fmt)


def _current_lr(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


def train(model: nn.Module, d: TrainData, recipe: Recipe, *, epochs: int, seed: int,
          loss: LossFn | None = None, teacher: nn.Module | None = None, feature_layers: tuple[str, ...] = (),
          hooks: TrainHooks | None = None, lr_scale: float = 1.0, device: torch.device | str = "cpu",
          progress=None, feature_pairs: tuple[tuple[str, str], ...] = (), extra_modules: nn.Module | None = None,
          inputs: torch.Tensor | None = None, labels: torch.Tensor | None = None, max_steps: int | None = None,
          optimizer: OptimizerFactory | None = None, select_on_val: bool = True,
          allow_real_train: bool = True, precision: str = "fp32", memory_format: str = "contiguous") -> TrainReport:
    """Train ``model`` in place and restore the validation-selected epoch (see module docstring).

    The keyword arguments are those of ``TrainFn`` (``methods/protocols.py``), plus:
    select_on_val: False keeps the last epoch (data-free runs: no real data chooses the model).
    allow_real_train: False refuses to train on ``d.x_train`` (data-free mode); explicit
        ``inputs`` are still accepted.
    precision, memory_format: training numerics (module docstring); the harness passes the recipe's,
        as narrowed by the method.
    """
    device = torch.device(device)
    check_numerics(precision, memory_format, device)
    loss = loss or default_loss
    hooks = hooks or TrainHooks()
    if inputs is None:
        if not allow_real_train:
            raise RealDataWithheld("this run is data-free: train_fn refuses the real training split; "
                                   "pass explicit inputs= (e.g. synthesised images)")
        x_train, y_train = d.x_train, d.y_train
    else:
        if labels is not None and len(labels) != len(inputs):
            raise ValueError(f"inputs ({len(inputs)}) and labels ({len(labels)}) differ in length")
        x_train, y_train = inputs, labels
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    model.to(device).train()
    if teacher is not None:
        teacher.to(device).eval()
    if extra_modules is not None:
        extra_modules.to(device).train()
    channels_last = memory_format == "channels_last"
    if channels_last:
        _set_format([model, teacher, extra_modules], memory_format)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    params = [p for p in model.parameters() if p.requires_grad]
    if extra_modules is not None:
        params += [p for p in extra_modules.parameters() if p.requires_grad]
    if optimizer is None:
        opt = torch.optim.AdamW(params, lr=recipe.lr * lr_scale, weight_decay=recipe.weight_decay)
    else:
        opt = optimizer(params)
    n = len(x_train)
    steps_per_epoch = max(1, math.ceil(n / recipe.batch_size))
    total = steps_per_epoch * max(1, epochs)
    if max_steps is not None:
        total = min(total, max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    gen = torch.Generator().manual_seed(seed)
    s_tap = _taps(model, list(feature_layers) + [s for s, _ in feature_pairs])
    t_tap = _taps(teacher, list(feature_layers) + [t for _, t in feature_pairs]) if teacher is not None else None

    def snapshot() -> tuple[dict, dict | None]:
        return (copy.deepcopy(model.state_dict()),
                copy.deepcopy(extra_modules.state_dict()) if extra_modules is not None else None)

    best = (-1.0, -1, None)  # (val acc, epoch, state)
    per_epoch: list[float] = []
    step, flops_per_sample, train_seconds, samples = 0, 0.0, 0.0, 0
    epochs_run = 0
    for epoch in range(epochs):
        if step >= total:
            break
        perm = torch.randperm(n, generator=gen)
        t0 = time.perf_counter()
        for i in range(steps_per_epoch):
            if step >= total:
                break
            idx = perm[i * recipe.batch_size:(i + 1) * recipe.batch_size]
            xb = _to_format(x_train[idx].to(device), memory_format)
            yb = y_train[idx].to(device) if y_train is not None else None
            counter = FlopCounterMode(display=False) if step == 0 else None
            if counter is not None:
                counter.__enter__()
            t_out = None
            with _autocast(precision, device):
                if teacher is not None:
                    with torch.no_grad():
                        t_logits = teacher(xb)
                    t_out = ModelOutput(t_logits, dict(t_tap.features) if t_tap else {})
                s_logits = model(xb)
                value = loss(ModelOutput(s_logits, dict(s_tap.features) if s_tap else {}), yb, t_out)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(value).backward()
                scaler.unscale_(opt)   # hooks below see true gradients
            else:
                value.backward()
            if hooks.before_step is not None:
                hooks.before_step(model, StepInfo(step + 1, total, epoch, _current_lr(opt), opt))
            lr_used = _current_lr(opt)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            if counter is not None:
                counter.__exit__(None, None, None)
                flops_per_sample = counter.get_total_flops() / len(idx)
            step += 1
            samples += len(idx)
            if hooks.after_step is not None:
                hooks.after_step(model, step, total)
            if hooks.after_step_info is not None:
                hooks.after_step_info(model, StepInfo(step, total, epoch, lr_used))
            if progress is not None:
                progress(1)
        train_seconds += time.perf_counter() - t0
        epochs_run += 1
        if not torch.isfinite(value):
            raise FloatingPointError(f"training diverged at epoch {epoch} (loss {value.item()})")
        val = accuracy_pct(model, d.x_val, d.y_val, device=device)
        per_epoch.append(val)
        if not select_on_val:
            best = (val, epoch, None)
        elif (hooks.selectable is None or hooks.selectable(step, total)) and val > best[0]:
            best = (val, epoch, snapshot())
    for tap in (s_tap, t_tap):
        if tap:
            tap.close()
    if channels_last:   # methods continue on ordinary (contiguous) tensors
        _set_format([model, teacher, extra_modules], "contiguous")
    if best[2] is None:  # no epoch was selectable, or selection is off: keep the last one
        last = per_epoch[-1] if per_epoch else accuracy_pct(model, d.x_val, d.y_val, device=device)
        best = (last, epochs_run - 1, None)
    else:
        model.load_state_dict(best[2][0])
        if extra_modules is not None:
            extra_modules.load_state_dict(best[2][1])
    model.eval()
    return TrainReport(best_epoch=best[1], val_top1_acc_pct=best[0], epochs_run=epochs_run,
                       flops_per_sample_train=flops_per_sample, seconds=train_seconds, samples_seen=samples,
                       val_acc_per_epoch=per_epoch, steps_run=step)
