"""Family protocols: the small interfaces a paper implements.

A method turns a task's model into a *deployable* model and says how real the
compression is. ``methods/`` never imports ``benchmarks/``: whatever a method
needs from the harness (training, the teacher, calibration data) arrives in a
``MethodContext``; training arrives as a ``TrainFn`` callable.

Families and what a paper implements:

===============  ===========================================================
distillation     ``loss(student_out, teacher_out, targets)``
pruning          ``importance(weight)`` or ``criterion(layer_view)`` +
                 ``sparsity_at(step, total_steps)`` (+ ``structured``), ``finalize``
                 makes it physical if it can; flows in ``methods/flows/prune.py``
quantization     ``prepare(model, ctx)`` then ``convert(model, ctx)``
binarization     same as quantization
compact          ``build(ctx)``: a model factory (flow: ``methods/flows/compact.py``)
acceleration     ``build(ctx)`` or ``transform(model, ctx)``: a faster operator
===============  ===========================================================
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol

import torch
from torch import nn


# --------------------------------------------------------------------------- plumbing
@dataclass
class ModelOutput:
    """What a loss sees of a forward pass: logits and, if asked for, named features."""

    logits: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)


class LossFn(Protocol):
    """``targets`` is None when the training inputs come without labels (``train_fn(inputs=x)``)."""

    def __call__(self, student: ModelOutput, targets: torch.Tensor | None,
                 teacher: ModelOutput | None) -> torch.Tensor: ...


@dataclass(frozen=True)
class StepInfo:
    """Where the training loop is, handed to step hooks.

    step: the optimiser step this call is about (1-based; ``before_step`` sees the step about to
        be taken, ``after_step_info`` the one just taken: the same number for the same step).
    total_steps: steps of the whole run (after any ``max_steps`` cap).
    epoch: 0-based epoch of this step.
    lr: learning rate of the optimiser's first parameter group used by this step.
    optimizer: the optimiser (``before_step`` only): read or clear per-parameter state, e.g. the
        AdamW moments of pruned weights; never step it from a hook.
    """

    step: int
    total_steps: int
    epoch: int
    lr: float
    optimizer: torch.optim.Optimizer | None = field(default=None, compare=False, repr=False)


@dataclass
class TrainHooks:
    """Callbacks a method hands to the harness's training loop.

    before_step(model, info): called after ``backward`` and before ``optimizer.step`` (gradients
        are populated; e.g. add a sparsity regulariser's subgradient, clip, mask gradients and
        clear the optimiser state of pruned weights through ``info.optimizer``).
    after_step(model, step, total_steps): called after every optimiser step (e.g. to update masks).
    after_step_info(model, info): the same moment as ``after_step`` with a ``StepInfo`` (epoch, lr).
    selectable(step, total_steps) -> bool: whether a checkpoint taken at ``step`` may be selected
        on validation (e.g. only once the final sparsity is reached).
    """

    after_step: Callable[[nn.Module, int, int], None] | None = None
    selectable: Callable[[int, int], bool] | None = None
    before_step: Callable[[nn.Module, StepInfo], None] | None = None
    after_step_info: Callable[[nn.Module, StepInfo], None] | None = None


@dataclass
class TrainReport:
    """What the harness's training loop returns (the model is updated in place)."""

    best_epoch: int
    val_top1_acc_pct: float
    epochs_run: int
    flops_per_sample_train: float = 0.0   # forward + backward (+ teacher forward), torch.utils.flop_counter
    seconds: float = 0.0                  # time in optimisation steps, validation excluded
    samples_seen: int = 0                 # training samples processed (sum of batch sizes)
    val_acc_per_epoch: list[float] = field(default_factory=list)  # validation top-1 after each epoch
    steps_run: int = 0                    # optimiser steps taken (0 in reports cached before this field)

    @property
    def gflops_per_s(self) -> float:
        return self.flops_per_sample_train * self.samples_seen / self.seconds / 1e9 if self.seconds else 0.0


OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]


class TrainFn(Protocol):
    """Train ``model`` in place; select the epoch on the validation split; restore it.

    model: trained in place (its parameters with ``requires_grad`` are optimised).
    epochs: passes over the training inputs.
    loss: ``loss(student_out, targets, teacher_out)``; default cross-entropy on the labels.
    teacher: run in eval mode under ``no_grad``; its logits (and features) reach the loss.
    feature_layers: module names tapped in both student and teacher (same names).
    feature_pairs: ``((student_layer, teacher_layer), ...)``: names tapped on each side; the loss
        sees ``student.features[student_layer]`` and ``teacher.features[teacher_layer]``.
    extra_modules: trainable modules optimised together with the model but not deployed
        (regressors, adapters); put in train mode, moved to the device, and restored with the
        model to the selected epoch. The loss reaches them through its own closure.
    inputs, labels: explicit training inputs (synthesised images, a transfer set) instead of the
        task's training split; ``labels`` optional (then the loss receives ``targets=None``).
    max_steps: cap on optimiser steps; the cosine schedule spans the capped run, and the last
        (partial) epoch is validated like the others.
    optimizer: factory ``params -> torch.optim.Optimizer`` replacing the default AdamW (the
        harness's cosine schedule still scales the factory's learning rate; ``lr_scale`` then
        does not apply).
    hooks: ``TrainHooks`` (before_step, after_step, after_step_info, selectable).
    lr_scale: multiplies the recipe's learning rate (default optimiser only).
    stage: the name under which this run's cost enters the cost ledger (e.g. "hint", "kd").
    """

    def __call__(
        self,
        model: nn.Module,
        *,
        epochs: int,
        loss: LossFn | None = None,
        teacher: nn.Module | None = None,
        feature_layers: tuple[str, ...] = (),
        hooks: TrainHooks | None = None,
        lr_scale: float = 1.0,
        feature_pairs: tuple[tuple[str, str], ...] = (),
        extra_modules: nn.Module | None = None,
        inputs: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        max_steps: int | None = None,
        optimizer: OptimizerFactory | None = None,
        stage: str = "train",
    ) -> TrainReport: ...


@dataclass
class LedgerEntry:
    """One costed stage: training, synthesis or search."""

    stage: str
    seconds: float
    epochs: float = 0.0
    samples: int = 0
    upstream: bool = False   # True: a cached model this run builds on (teacher, baseline), not this method's cost


@dataclass
class CostLedger:
    """What a run cost, stage by stage.

    The harness's ``train_fn`` adds one entry per call automatically; a method adds its own
    stages (synthesis, search) with ``ctx.ledger.add(stage, seconds=..., epochs=..., samples=...)``.
    Models loaded from the cache (teacher, baseline) are recorded with ``upstream=True``: their
    training happened once, upstream of every method that uses them.
    """

    entries: list[LedgerEntry] = field(default_factory=list)

    def add(self, stage: str, *, seconds: float, epochs: float = 0.0, samples: int = 0,
            upstream: bool = False) -> LedgerEntry:
        if seconds < 0 or epochs < 0 or samples < 0:
            raise ValueError(f"ledger stage {stage!r}: seconds, epochs and samples must be >= 0")
        entry = LedgerEntry(stage, float(seconds), float(epochs), int(samples), upstream)
        self.entries.append(entry)
        return entry

    def add_report(self, stage: str, report: "TrainReport", *, upstream: bool = False) -> LedgerEntry:
        return self.add(stage, seconds=report.seconds, epochs=report.epochs_run, samples=report.samples_seen,
                        upstream=upstream)

    def totals(self, *, upstream: bool = False) -> dict[str, float]:
        chosen = [e for e in self.entries if e.upstream == upstream]
        return {"seconds": sum(e.seconds for e in chosen), "epochs": sum(e.epochs for e in chosen),
                "samples": sum(e.samples for e in chosen)}

    def to_list(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(e) for e in self.entries]


class DataWithheld(RuntimeError):
    """A data-free method asked for real training data (the harness withholds it)."""


def _not_supplied(what: str) -> Callable[..., Any]:
    def fn(*_a: Any, **_k: Any) -> Any:
        raise NotImplementedError(f"this MethodContext does not supply {what}")
    return fn


@dataclass
class MethodContext:
    """Everything a method may use, supplied by the harness."""

    num_classes: int
    in_chans: int
    input_size: tuple[int, int]
    epochs_scratch: int                       # budget: epochs when training from scratch
    epochs_finetune: int                      # budget: epochs when fine-tuning a trained model
    train_fn: TrainFn
    build_student: Callable[[], nn.Module]    # the task's student architecture, untrained
    build_baseline: Callable[[], nn.Module]   # the task's baseline architecture, untrained
    load_baseline: Callable[[], nn.Module]    # the task's baseline, trained (cached) for this seed
    load_teacher: Callable[[], nn.Module]     # the task's teacher, trained (cached)
    calibration_batches: Callable[..., list[torch.Tensor]]  # (n=None): n batches of training inputs (None: recipe's)
    device: torch.device = torch.device("cpu")
    seed: int = 0
    # --- additions (harness-supplied; a hand-built context may leave them out) ---------------
    load_student: Callable[[], nn.Module] = field(default=_not_supplied("load_student"))
    """The task's student trained alone for this seed (cached like the baseline)."""
    baseline_init_state: Callable[[], dict[str, torch.Tensor]] = field(default=_not_supplied("baseline_init_state"))
    """The untrained baseline's initial ``state_dict`` for this seed (for rewinding to init)."""
    load_baselines: Callable[[list[int]], list[nn.Module]] = field(default=_not_supplied("load_baselines"))
    """Trained baselines of the given seeds (for ensembles), cached."""
    evaluate: Callable[[nn.Module], float] = field(default=_not_supplied("evaluate"))
    """Top-1 % of a model on the validation split (never test): scores a candidate."""
    build_arch: Callable[[str], nn.Module] = field(default=_not_supplied("build_arch"))
    """An untrained model of a task role or variant: "teacher", "student", "student_thin_deep", ..."""
    arch_roles: tuple[str, ...] = ()
    """The role/variant names ``build_arch`` accepts."""
    load_trained: Callable[[str], nn.Module] = field(default=_not_supplied("load_trained"))
    """A role or declared variant (``arch_roles``) trained from scratch alone for this seed, cached like
    the teacher (e.g. a same-width deeper teacher, as in FSP distillation); its training is upstream cost."""
    labelled_subset: Callable[[int], tuple[torch.Tensor, torch.Tensor]] = field(
        default=_not_supplied("labelled_subset"))
    """(inputs, labels) of the first n training images (up to the split's size): a small labelled share."""
    data_free: bool = False
    """True: the harness withholds real training data (train_fn needs explicit inputs,
    calibration_batches/evaluate/load_student raise ``DataWithheld``)."""
    ledger: CostLedger = field(default_factory=CostLedger)

    def example_input(self, batch: int = 1) -> torch.Tensor:
        return torch.randn(batch, self.in_chans, *self.input_size, device=self.device)


@dataclass
class EncodedModel:
    """The deployable model as the bytes a user would store (storage below 8 bits or sparse).

    ``encode(model)`` returns the bytes; ``decode(bytes)`` rebuilds the deployable model from
    those bytes and the architecture alone (the contract of ``torch.save(state_dict)``). The
    harness writes the bytes to a file, counts them (``size_bytes_encoded``), decodes the file
    and requires the decoded model to score the same test accuracy within ``acc_tolerance_pp``
    (default 0: same weights, same kernels). Shared codecs: ``methods/encoding/``.
    """

    encode: Callable[[nn.Module], bytes]
    decode: Callable[[bytes], nn.Module]
    format: str                          # e.g. "sparse relative-index + codebook + Huffman"
    acc_tolerance_pp: float = 0.0


OpsCounter = Callable[[nn.Module, torch.Tensor], dict[str, float]]
"""``count_ops(model, x) -> {name: total over the batch}`` for operations the FLOP counter cannot
see (additions, shifts, XNOR-popcounts, multiplications that zero-skipping removes). The harness
sums it over the test inputs and stores per-sample means in ``ops_json``, so counts that depend
on the input (activation sparsity) are averaged over real inputs. Names carry the unit
(``macs_nonzero_weights``, ``additions``)."""


@dataclass
class Compressed:
    """A method's output: the deployable model and the honest facts about it.

    ``storage_real``: the stored form is really smaller (int8 tensors, removed channels, an
    ``encoded`` file that is measured and decoded). ``compute_real``: the deployed kernels really
    do less work (int8 kernels, removed channels, a smaller network). Both default to ``real``.
    """

    model: nn.Module
    real: bool                      # True: physically smaller/faster (int8 kernels, removed channels)
    note: str                       # what is real and what is simulated, in words
    bits_per_weight: float = 32.0   # storage bits per parameter of the deployable model (theoretical)
    quant_engine: str = ""
    train_report: TrainReport | None = None
    macs_model: nn.Module | None = None   # float twin for MAC counting when kernels are invisible to flop_counter
    extra: dict[str, Any] = field(default_factory=dict)
    storage_real: bool | None = None
    compute_real: bool | None = None
    encoded: EncodedModel | None = None
    count_ops: OpsCounter | None = None

    # Control models trained under the same recipe (e.g. {"random-init": ..., "l1": ...}); the harness
    # scores and measures each like a row of its own, method "<key>:<name>", linked to this row.
    controls: dict[str, "Compressed"] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.storage_real is None:
            self.storage_real = self.real
        if self.compute_real is None:
            self.compute_real = self.real


# --------------------------------------------------------------------------- base class
class Method:
    """Base of every registered method. Subclasses set ``Config`` (a dataclass) and ``apply``.

    ``key`` and ``family`` are set by ``@register``. Config fields declare their type and range
    (``x: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.8``); overrides and defaults are checked
    with pydantic (see ``methods/config.py``), a bad one raises a one-line ``ValueError``.
    """

    key: ClassVar[str]
    family: ClassVar[str]
    data_free: ClassVar[bool] = False   # True: the harness withholds real training data; the row says so
    arch_roles: ClassVar[tuple[str, ...]] = ()   # task variants this method builds ("student_thin_deep"):
                                                 # their specs enter the row's config and hash
    train_autocast: ClassVar[bool] = False       # True: mixed-precision training (a recipe's precision bf16/fp16)
                                                 # is safe for this method; False keeps its training fp32
    train_channels_last: ClassVar[bool] = True   # False: its layers need contiguous (NCHW) tensors in training

    @dataclass
    class Config:
        pass

    def __init__(self, **overrides: Any) -> None:
        from mcbench.methods.config import validated_config

        self.config = validated_config(type(self), overrides)

    def config_dict(self) -> dict[str, Any]:
        """The config as plain JSON values (tuples become lists), as stored on the row and hashed."""
        return _json_plain(dataclasses.asdict(self.config))

    def apply(self, ctx: MethodContext) -> Compressed:
        raise NotImplementedError


def _json_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- families
class DistillationMethod(Method):
    """Train the task's student with ``loss`` against the task's (frozen) teacher.

    A paper implements ``loss``; feature-based papers list the module names whose
    outputs they need in ``feature_layers`` (same names in student and teacher).
    """

    feature_layers: ClassVar[tuple[str, ...]] = ()

    def loss(self, student: ModelOutput, targets: torch.Tensor, teacher: ModelOutput | None) -> torch.Tensor:
        raise NotImplementedError

    def apply(self, ctx: MethodContext) -> Compressed:
        from mcbench.methods.flows.distill import distil_task_student

        return distil_task_student(ctx, self.loss, self.feature_layers)


class PruningMethod(Method):
    """Prune while fine-tuning the trained baseline (``methods/flows/prune.py``).

    A paper implements a criterion and a schedule:

    - ``importance(weight) -> scores`` (same shape as the weight for unstructured pruning; rows
      are summed per output channel for structured), or, when it needs more than the weight,
      ``criterion(view) -> scores`` where ``view`` is a ``LayerView`` (weight, gradient, the BN
      that follows, calibration activations; ``methods/pruning/_layerview.py``);
    - ``sparsity_at(step, total_steps) -> fraction`` and ``mask_update_due(step, total_steps)``;
    - ``ranking``: ``"layer"`` (every layer pruned to the fraction) or ``"global"`` (one threshold);
    - ``finalize(model, masks)`` turns the fine-tuned model into the deployable ``Compressed``.

    ``apply`` is the default flow; a paper that needs another order (one-shot removal, layer-wise
    reconstruction, controls) composes the functions of ``methods/flows/prune.py`` itself.
    """

    structured: ClassVar[bool] = False
    ranking: ClassVar[str] = "layer"

    def importance(self, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def criterion(self, view: Any) -> torch.Tensor:
        """Scores for one layer from its ``LayerView``; the default scores the weight alone."""
        return self.importance(view.weight)

    def sparsity_at(self, step: int, total_steps: int) -> float:
        raise NotImplementedError

    def mask_update_due(self, step: int, total_steps: int) -> bool:
        """Whether masks are recomputed after ``step`` (default: every step)."""
        return True

    def finalize(self, model: nn.Module, masks: "dict[str, torch.Tensor]") -> Compressed:
        raise NotImplementedError

    def apply(self, ctx: MethodContext) -> Compressed:
        from mcbench.methods.flows import prune

        return prune.gradual_pruning(ctx, self)


class QuantizationMethod(Method):
    """``prepare`` (insert fake-quant or calibration observers), train, then ``convert``.

    ``from_scratch`` picks the starting point: the untrained baseline architecture
    (trained for ``epochs_scratch``) or the trained baseline (fine-tuned for
    ``epochs_finetune``; 0 fine-tuning epochs with ``calibrate`` = post-training
    quantization). ``hooks`` lets a paper act during training (freeze BN, clip weights).
    """

    from_scratch: ClassVar[bool] = False

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        raise NotImplementedError

    def convert(self, model: nn.Module, ctx: MethodContext) -> Compressed:
        raise NotImplementedError

    def hooks(self, ctx: MethodContext) -> TrainHooks | None:
        return None

    def apply(self, ctx: MethodContext) -> Compressed:
        from mcbench.methods.flows import quantize
        return quantize.prepare_train_convert(self, ctx)


class BinarizationMethod(QuantizationMethod):
    """Binarization is quantization to one bit: the same prepare/convert protocol."""


class CompactMethod(Method):
    """A compact architecture: ``build(ctx)`` returns an untrained model, trained from scratch."""

    def build(self, ctx: MethodContext) -> nn.Module:
        raise NotImplementedError

    def apply(self, ctx: MethodContext) -> Compressed:
        from mcbench.methods.flows.compact import train_from_scratch

        return train_from_scratch(ctx, self.build(ctx))


class AccelerationMethod(Method):
    """A faster algorithm or operator for the same computation (Winograd/FFT convolution, adder
    or shift layers, low-rank factorisation, sparse kernels).

    A paper implements one of:

    - ``build(ctx)``: a model whose layers are the paper's operator, trained from scratch on the
      task (e.g. AdderNet: every conv replaced by an adder layer before training);
    - ``transform(model, ctx)``: the trained baseline with layers replaced by the faster
      algorithm (e.g. Winograd or low-rank factorisation of trained weights), then fine-tuned
      for the fine-tuning budget (``finetune = False``: used as transformed).

    ``real`` says whether the new operator runs as a real kernel (measured latency reflects it)
    or is simulated with standard ops; ``note`` says which in words.
    """

    real: ClassVar[bool] = False
    note: ClassVar[str] = "operator simulated with standard PyTorch ops"
    finetune: ClassVar[bool] = True

    def build(self, ctx: MethodContext) -> nn.Module:
        raise NotImplementedError

    def transform(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        raise NotImplementedError

    def _overrides(self, name: str) -> bool:
        return getattr(type(self), name) is not getattr(AccelerationMethod, name)

    def apply(self, ctx: MethodContext) -> Compressed:
        if self._overrides("build"):
            model = self.build(ctx).to(ctx.device)
            report = ctx.train_fn(model, epochs=ctx.epochs_scratch)
        elif self._overrides("transform"):
            model = self.transform(ctx.load_baseline().to(ctx.device), ctx).to(ctx.device)
            epochs = ctx.epochs_finetune if self.finetune else 0
            report = ctx.train_fn(model, epochs=epochs) if epochs > 0 else None
        else:
            raise NotImplementedError(f"{type(self).__name__}: implement build(ctx) or transform(model, ctx)")
        return Compressed(model.eval(), real=self.real, note=self.note, train_report=report)
