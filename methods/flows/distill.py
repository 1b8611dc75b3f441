"""Distillation flows: freeze a teacher, train a student against it, wrap the result.

    teacher = frozen(ctx.load_teacher())
    student = ctx.build_arch("student_thin_deep")
    report = distil(ctx, student, loss, teacher=teacher, feature_pairs=(("stage2", "stage2"),),
                    extra_modules=regressor, stage="hint")
    return compressed(student, report, note="...")

``distil`` is ``ctx.train_fn`` with the distillation defaults filled in (the task's student
budget, the student moved to the context's device); everything ``TrainFn`` accepts passes
through.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from mcbench.methods.protocols import Compressed, LossFn, MethodContext, TrainReport

STUDENT_NOTE = "smaller student architecture trained by distillation"


def frozen(teacher: nn.Module) -> nn.Module:
    """``teacher`` in eval mode with every parameter's ``requires_grad`` off (returned for chaining)."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def distil(ctx: MethodContext, student: nn.Module, loss: LossFn, *, teacher: nn.Module | None = None,
           epochs: int | None = None, feature_layers: tuple[str, ...] = (),
           feature_pairs: tuple[tuple[str, str], ...] = (), extra_modules: nn.Module | None = None,
           stage: str = "distil", **train_kw: Any) -> TrainReport:
    """Train ``student`` in place with ``loss`` against ``teacher`` (frozen here if given).

    epochs: default ``ctx.epochs_scratch`` (a student is trained from scratch).
    Other keyword arguments (``inputs``, ``labels``, ``max_steps``, ``optimizer``, ``hooks``,
    ``lr_scale``) go to ``ctx.train_fn`` unchanged.
    """
    if teacher is not None:
        frozen(teacher)
    student.to(ctx.device)
    if extra_modules is not None:
        extra_modules.to(ctx.device)
    return ctx.train_fn(student, epochs=ctx.epochs_scratch if epochs is None else epochs, loss=loss,
                        teacher=teacher, feature_layers=feature_layers, feature_pairs=feature_pairs,
                        extra_modules=extra_modules, stage=stage, **train_kw)


def compressed(student: nn.Module, report: TrainReport | None, note: str = STUDENT_NOTE, **extra: Any) -> Compressed:
    """The deployable student (eval mode) as a ``Compressed`` result; ``extra`` goes to the row."""
    return Compressed(student.eval(), real=True, note=note, train_report=report, extra=dict(extra))


def distil_task_student(ctx: MethodContext, loss: LossFn, feature_layers: tuple[str, ...] = ()) -> Compressed:
    """The family default: the task's student trained with ``loss`` against the task's teacher."""
    teacher = frozen(ctx.load_teacher())   # loaded first: training it on a cache miss reseeds the RNG
    student = ctx.build_student()
    report = distil(ctx, student, loss, teacher=teacher, feature_layers=feature_layers, stage="train")
    return compressed(student, report)
