"""Quantization and binarization flows: start, prepare, train, freeze, calibrate, convert.

Small functions a paper composes in its ``apply`` (``QuantizationMethod.apply`` is
``prepare_train_convert(self, ctx)``)::

    model = start_model(ctx, from_scratch=False)
    prepared = prepare_qat(model, ctx, engine="x86")           # FX fake-quant, BN folded
    report = train_prepared(ctx, prepared, epochs=ctx.epochs_finetune,
                            hooks=freeze_schedule(0.5))         # observers frozen mid-training
    int8 = convert_int8(prepared, engine="x86")

Observers never see validation data: ``prepare_qat`` and ``prepare_ptq`` make every
fake-quant/observer module observe only while the model is in training mode (the
harness scores validation in eval mode), so a validation pass cannot move a scale or a
zero point. ``freeze_observers`` stops observation for good (paper schedules).
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from mcbench.methods.protocols import MethodContext, TrainHooks, TrainReport


@dataclass(frozen=True)
class ActivationRange:
    """The uint8 activation range used for fake-quant and int8 kernels.

    ``reduce_range=True`` keeps activations in 0..127 (7 bits). On x86 (fbgemm) kernels
    multiply uint8 activations by int8 weights in pairs accumulated in int16, which
    saturates at full range: on the digits baseline, full range 0..255 made the int8
    model's logits differ from the fake-quant model's by 0.34 on average (7-bit: 0.03),
    so the training graph would not be the deployed one. 7 bits is the honest default.
    """

    reduce_range: bool = True

    @property
    def bits(self) -> int:
        return 7 if self.reduce_range else 8

    @property
    def quant_max(self) -> int:
        return 127 if self.reduce_range else 255


def _fx():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        from torch.ao.quantization import quantize_fx
    return quantize_fx


def set_engine(engine: str) -> None:
    if engine not in torch.backends.quantized.supported_engines:
        raise ValueError(f"quantized engine {engine!r} not supported here "
                         f"(supported: {torch.backends.quantized.supported_engines})")
    torch.backends.quantized.engine = engine


def start_model(ctx: MethodContext, *, from_scratch: bool) -> nn.Module:
    """The untrained baseline architecture or the trained baseline, on the context's device."""
    return (ctx.build_baseline() if from_scratch else ctx.load_baseline()).to(ctx.device)


def qat_qconfig_mapping(engine: str, act: ActivationRange):
    """The engine's default QAT mapping with the activation range stated by ``act``."""
    from torch.ao.quantization import (QConfig, FusedMovingAvgObsFakeQuantize, MovingAverageMinMaxObserver,
                                       get_default_qat_qconfig_mapping)
    default = get_default_qat_qconfig_mapping(engine)
    activation = FusedMovingAvgObsFakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255, reduce_range=act.reduce_range,
        dtype=torch.quint8)
    return default.set_global(QConfig(activation=activation, weight=default.global_qconfig.weight))


def observers(model: nn.Module) -> list[nn.Module]:
    """The fake-quant modules (QAT) of ``model``, or its bare observers (PTQ) if it has none."""
    from torch.ao.quantization import FakeQuantizeBase
    from torch.ao.quantization.observer import ObserverBase
    fake_quants = [m for m in model.modules() if isinstance(m, FakeQuantizeBase)]
    return fake_quants or [m for m in model.modules() if isinstance(m, ObserverBase)]


def _skip_observer_in_eval(fq: nn.Module, args):
    if not fq.training and bool(fq.observer_enabled[0]):
        fq.observer_enabled[0] = 0
        fq._mcbench_paused = True


def _resume_observer(fq: nn.Module, args, out):
    if getattr(fq, "_mcbench_paused", False):
        fq.observer_enabled[0] = 1
        fq._mcbench_paused = False


def observe_only_in_training(model: nn.Module) -> nn.Module:
    """Fake-quant modules skip observation in eval mode (validation never moves a scale).

    Bare observers (PTQ) have no switch; ``calibrate_ptq`` is the only place they see data.
    """
    from torch.ao.quantization import FakeQuantizeBase
    for m in model.modules():
        if isinstance(m, FakeQuantizeBase):
            m.register_forward_pre_hook(_skip_observer_in_eval)
            m.register_forward_hook(_resume_observer)
    return model


def prepare_qat(model: nn.Module, ctx: MethodContext, *, engine: str = "x86",
                act: ActivationRange = ActivationRange()) -> nn.Module:
    """Insert fake-quant (weights int8 per-channel, activations per ``act``), BN folded (FX)."""
    set_engine(engine)
    model = copy.deepcopy(model).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = _fx().prepare_qat_fx(model, qat_qconfig_mapping(engine, act), (ctx.example_input(2).cpu(),))
    return observe_only_in_training(prepared)


def prepare_ptq(model: nn.Module, ctx: MethodContext, *, engine: str = "x86") -> nn.Module:
    """Insert calibration observers (post-training quantization, the engine's default qconfig)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    set_engine(engine)
    model = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _fx().prepare_fx(model, get_default_qconfig_mapping(engine), (ctx.example_input(2).cpu(),))


@torch.no_grad()
def calibrate_ptq(prepared: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Run calibration batches (training data, never validation or test) through the observers."""
    prepared.eval()
    device = next((p.device for p in prepared.parameters()), torch.device("cpu"))
    for x in batches:
        prepared(x.to(device))
    return prepared


def freeze_observers(model: nn.Module, *, bn_stats: bool = True) -> None:
    """Stop observation (scales and zero points fixed) and, with ``bn_stats``, BN statistics."""
    if bn_stats:
        model.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)
    model.apply(torch.ao.quantization.disable_observer)


def freeze_schedule(fraction: float, then: Callable[[nn.Module, int, int], None] | None = None) -> TrainHooks:
    """Hooks that freeze observers and BN statistics once ``fraction`` of the steps are done.

    ``then`` (optional) runs after every step as well (a paper's own per-step action).
    """
    state = {"frozen": False}

    def after_step(model: nn.Module, step: int, total: int) -> None:
        if not state["frozen"] and step >= fraction * total:
            freeze_observers(model)
            state["frozen"] = True
        if then is not None:
            then(model, step, total)

    return TrainHooks(after_step=after_step)


def train_prepared(ctx: MethodContext, prepared: nn.Module, *, epochs: int,
                   hooks: TrainHooks | None = None, **train_kw) -> TrainReport | None:
    """Train a prepared model with the harness's loop (``train_kw``: e.g. ``lr_scale``); ``None`` when no epochs
    are granted (PTQ)."""
    return ctx.train_fn(prepared, epochs=epochs, hooks=hooks, **train_kw) if epochs > 0 else None


def convert_int8(prepared: nn.Module, *, engine: str = "x86") -> nn.Module:
    """Convert a prepared (QAT or calibrated PTQ) model to int8 kernels on the CPU."""
    set_engine(engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _fx().convert_fx(copy.deepcopy(prepared).cpu().eval())


@torch.no_grad()
def reestimate_bn(model: nn.Module, batches: list[torch.Tensor], device: torch.device) -> nn.Module:
    """Re-estimate every batch norm's running mean and variance on ``batches`` (a cumulative average over them),
    weights untouched; only the BN layers run in training mode. Returns the model in eval mode.

    For a quantizer whose last step moves weights after the last re-training (no paper's step: SLQ/MLQ use it,
    see xu2018deep's Deviations); the batch statistics then match the weights the model is scored with."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    if not bns or not batches:
        return model
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None          # cumulative moving average: every batch counts equally
        m.train()
    for b in batches:
        model(b.to(device))
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    return model.eval()


def prepare_train_convert(method, ctx: MethodContext, **train_kw):
    """The quantization family's default flow: ``method.prepare``, train, ``method.convert``.

    ``method.from_scratch`` picks the start (untrained architecture trained for
    ``epochs_scratch``, or the trained baseline fine-tuned for ``epochs_finetune``); ``train_kw`` goes to the
    harness's training call (e.g. ``lr_scale``).
    """
    model = start_model(ctx, from_scratch=method.from_scratch)
    prepared = method.prepare(model, ctx)
    epochs = ctx.epochs_scratch if method.from_scratch else ctx.epochs_finetune
    report = train_prepared(ctx, prepared, epochs=epochs, hooks=method.hooks(ctx), **train_kw)
    out = method.convert(prepared.eval(), ctx)
    out.train_report = report
    return out


def float_twin(prepared: nn.Module) -> nn.Module:
    """A CPU eval copy of the prepared float graph, for MAC counting (flop_counter cannot see int8 ops)."""
    return copy.deepcopy(prepared).cpu().eval()
