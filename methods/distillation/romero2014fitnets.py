"""FitNets: Hints for Thin Deep Nets.

Romero, Ballas, Kahou, Chassang, Gatta, Bengio (2014/ICLR 2015), arXiv:1412.6550. Key: romero2014fitnets.
Implements the stage-wise training of Section 2:
    Stage 1 (Section 2.2, Eq. (3)): hint training of the student up to its guided layer,
        L_HT(W_guided, W_r) = 1/2 || u_h(x; W_hint) - r(v_g(x; W_guided); W_r) ||^2,
        u_h: the teacher's hint layer (frozen); v_g: the student's guided layer; r: a trainable
        convolutional regressor with kernel N_g - N_h + 1 (spatial sizes of guided and hint
        outputs, so no padding is needed) followed by the hint layer's non-linearity (ReLU).
    Stage 2 (Section 2.1, Eq. (2)): knowledge distillation of the whole student,
        L_KD = H(y, P_S) + lambda * H(P_T^tau, P_S^tau),
        tau = 3 and lambda annealed linearly from 4 to 1 over the stage (as in the authors'
        released configuration, ``TeacherDecayOverEpoch``).
    The student is the task's thin-and-deep variant (``student_thin_deep``: the student's
    widths, two conv blocks per stage: deeper and thinner than the teacher); the guided layer
    is its middle stage and the hint layer the teacher's middle stage.
Real: the smaller student and both training stages; the regressor is trained (an extra module
of the training loop) and is not part of the deployed model. Simulated: nothing.
Deviations: H(P_T^tau, P_S^tau) is computed as KL(P_T^tau || P_S^tau), which differs by the
teacher's entropy, a constant (same gradients). The hint stage runs for a fixed fraction of the
scratch budget (``hint_epochs_fraction``; the paper trains it to convergence on validation), so
the method costs that many epochs more than KD (shown in the cost ledger). lambda is annealed
per step over the KD stage (authors: per epoch, from epoch 5). AdamW + cosine (the harness
recipe) instead of RMSProp; no maxout units, no data augmentation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.flows.distill import compressed, distil, frozen
from mcbench.methods.protocols import Compressed, DistillationMethod, MethodContext, ModelOutput, StepInfo, TrainHooks
from mcbench.methods.registry import register


class Regressor(nn.Module):
    """r(v_g): conv with kernel N_g - N_h + 1 (no padding) from guided to hint channels, then ReLU."""

    def __init__(self, guided_shape: torch.Size, hint_shape: torch.Size) -> None:
        super().__init__()
        (c_g, h_g, w_g), (c_h, h_h, w_h) = guided_shape[1:], hint_shape[1:]
        if h_g < h_h or w_g < w_h:
            raise ValueError(f"guided layer output {tuple(guided_shape[1:])} is smaller than the hint "
                             f"{tuple(hint_shape[1:])}: a convolutional regressor cannot enlarge it")
        self.conv = nn.Conv2d(c_g, c_h, (h_g - h_h + 1, w_g - w_h + 1))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(v))


def hint_loss(guided: torch.Tensor, hint: torch.Tensor, regressor: nn.Module) -> torch.Tensor:
    """Eq. (3): 1/2 ||u_h - r(v_g)||^2 per sample, averaged over the batch."""
    return 0.5 * (hint - regressor(guided)).pow(2).flatten(1).sum(1).mean()


def fitnet_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                   temperature: float, lam: float) -> torch.Tensor:
    """Eq. (2): CE(y, P_S) + lambda * KL(P_T^tau || P_S^tau) (no tau^2 factor, as in the paper)."""
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True)
    return F.cross_entropy(student_logits, targets) + lam * soft


def middle_stage(model: nn.Module) -> str:
    """The middle stage module of a task CNN (``stage2`` of three)."""
    n = getattr(model, "n_stages", None)
    if not n:
        raise ValueError(f"{type(model).__name__} has no stages; set guided_layer/hint_layer explicitly")
    return f"stage{(n + 1) // 2}"


def feature_shape(model: nn.Module, layer: str, example: torch.Tensor) -> torch.Size:
    out: dict[str, torch.Size] = {}

    def grab(_m: nn.Module, _i: tuple, o: torch.Tensor) -> None:
        out["s"] = o.shape

    handle = dict(model.named_modules())[layer].register_forward_hook(grab)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(example)
    model.train(was_training)
    handle.remove()
    return out["s"]


@dataclass
class _Anneal:
    """lambda, linear from ``start`` to ``end`` over the steps of a run (updated after each step)."""

    start: float
    end: float
    value: float = field(init=False)
    history: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.value = self.start

    def update(self, _model: nn.Module, info: StepInfo) -> None:
        self.history.append(self.value)
        self.value = self.start + (self.end - self.start) * min(1.0, info.step / max(1, info.total_steps - 1))


@register(family="distillation")
class romero2014fitnets(DistillationMethod):
    arch_roles = ("student_thin_deep",)

    @dataclass
    class Config:
        temperature: Annotated[float, Field(gt=0)] = 3.0          # tau (paper: 3)
        lambda_start: Annotated[float, Field(ge=0)] = 4.0         # lambda at the start of stage 2 (paper: 4)
        lambda_end: Annotated[float, Field(ge=0)] = 1.0           # lambda at the end of stage 2 (paper: 1)
        hint_epochs_fraction: Annotated[float, Field(gt=0, le=1)] = 0.34  # stage-1 epochs / scratch epochs
        student_role: str = "student_thin_deep"
        guided_layer: str = ""    # student module; "" = its middle stage
        hint_layer: str = ""      # teacher module; "" = its middle stage

    def hint_epochs(self, ctx: MethodContext) -> int:
        return max(1, round(self.config.hint_epochs_fraction * ctx.epochs_scratch))

    def apply(self, ctx: MethodContext) -> Compressed:
        """Stage 1 (hints through the regressor), then stage 2 (KD); ``self.trace`` keeps what happened."""
        c = self.config
        teacher = frozen(ctx.load_teacher())
        student = ctx.build_arch(c.student_role).to(ctx.device)
        g = c.guided_layer or middle_stage(student)
        h = c.hint_layer or middle_stage(teacher)
        example = ctx.example_input(2)
        regressor = Regressor(feature_shape(student, g, example), feature_shape(teacher, h, example)).to(ctx.device)

        # Stage 1: hints. Only the student's layers up to the guided layer and the regressor get gradients.
        hint_values: list[float] = []

        def stage1_loss(s: ModelOutput, _y, t: ModelOutput | None) -> torch.Tensor:
            value = hint_loss(s.features[g], t.features[h], regressor)
            hint_values.append(value.item())
            return value

        init_regressor = {k: v.detach().clone() for k, v in regressor.state_dict().items()}
        grad_norms: list[float] = []

        def record_grad(_m: nn.Module, _info: StepInfo) -> None:
            grad_norms.append(float(sum(p.grad.norm() for p in regressor.parameters() if p.grad is not None)))

        # selectable: only the last step (validation accuracy means nothing before stage 2)
        last_only = TrainHooks(selectable=lambda step, total: step == total, before_step=record_grad)
        hint_report = distil(ctx, student, stage1_loss, teacher=teacher, epochs=self.hint_epochs(ctx),
                             feature_pairs=((g, h),), extra_modules=regressor, hooks=last_only, stage="hint")

        # Stage 2: KD of the whole student with annealed lambda.
        anneal = _Anneal(c.lambda_start, c.lambda_end)

        def stage2_loss(s: ModelOutput, y, t: ModelOutput | None) -> torch.Tensor:
            return fitnet_kd_loss(s.logits, t.logits, y, c.temperature, anneal.value)

        report = distil(ctx, student, stage2_loss, teacher=teacher, hooks=TrainHooks(after_step_info=anneal.update),
                        stage="kd")
        self.trace = {"regressor": regressor, "regressor_init": init_regressor, "hint_losses": hint_values,
                      "regressor_grad_norms": grad_norms, "lambdas": anneal.history}
        k = max(1, len(hint_values) // 10)
        return compressed(
            student, report,
            note="thin-and-deep student: hint training through a regressor (not deployed), then KD",
            guided_layer=g, hint_layer=h, hint_epochs=hint_report.epochs_run,
            hint_loss_first=sum(hint_values[:k]) / k, hint_loss_last=sum(hint_values[-k:]) / k,
            regressor_params=sum(p.numel() for p in regressor.parameters()),
        )
