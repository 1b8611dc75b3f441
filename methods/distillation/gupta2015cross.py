"""Cross Modal Distillation for Supervision Transfer.

Gupta, Hoffman, Malik (CVPR 2016; arXiv:1507.00448, 2015). Key: gupta2015cross.
Implements supervision transfer (Section 3):
    A network for a modality without labels is trained to reproduce, on paired images, the
    mid-level features of a network trained with labels on the other modality:
        min_{W_d, A}  sum_i || A(phi_d(I_d^i; W_d)) - phi_rgb(I_rgb^i) ||^2
    phi_rgb: the task's trained teacher on the images (the labelled modality); phi_d: the student
    on the paired modality; both at their last conv stage; the labels are not used. The result
    initialises the student, which is then fine-tuned on a small labelled share of the second
    modality (Section 4's use as pre-training), against the same student trained on that share
    alone (control row ``share-only``).
    The paired modality is made from the task's images: the Sobel gradient magnitude
    sqrt(gx^2 + gy^2) of the (channel-averaged) image, scaled to the image's range (an
    edge/"depth-like" map with no colour or brightness). It is a fixed first layer of the
    deployed model, so the deployed student sees only the second modality.
Real: the smaller student on the second modality. Simulated: the second modality (computed from
the images, not sensed).
Deviations: no depth or optical flow here (the substitute modality is stated above); A is a
trainable 1x1 convolution (the student is narrower than the teacher; the paper matches layers of
the same shape); features of the last conv stage, not pool5 of AlexNet/VGG; the transfer stage
uses every training image unlabelled and keeps its last epoch; the labelled share is the first
``labelled_share`` training images; AdamW + cosine (the harness recipe).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.flows.distill import compressed, distil, frozen
from mcbench.methods.protocols import Compressed, DistillationMethod, MethodContext, ModelOutput, TrainHooks
from mcbench.methods.registry import register


class SobelModality(nn.Module):
    """Image -> gradient magnitude of its channel mean, repeated to ``out_chans`` channels (fixed)."""

    def __init__(self, out_chans: int) -> None:
        super().__init__()
        gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        self.register_buffer("kernel", torch.stack([gx, gx.T]).unsqueeze(1))   # (2, 1, 3, 3)
        self.out_chans = out_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.conv2d(x.mean(1, keepdim=True), self.kernel, padding=1)
        mag = (g.pow(2).sum(1, keepdim=True) + 1e-12).sqrt() / 4.0   # |Sobel| <= 4 x the pixel range
        return mag.expand(-1, self.out_chans, -1, -1)


def transfer_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor, adapter: nn.Module) -> torch.Tensor:
    """Squared L2 distance of the adapted student features to the teacher's, summed per image, batch mean."""
    return (adapter(student_feat) - teacher_feat).pow(2).flatten(1).sum(1).mean()


@register(family="distillation")
class gupta2015cross(DistillationMethod):
    @dataclass
    class Config:
        layer: str | None = None                               # matched stage; None: the student's last stage
        labelled_share: Annotated[int, Field(ge=1)] = 1000     # labelled images of the second modality
        share_passes_per_budget_epoch: Annotated[int, Field(ge=1)] = 5   # fine-tuning passes over the share
        share_only_control: bool = True                        # the same student trained on the share alone

    def _student(self, ctx: MethodContext) -> nn.Sequential:
        return nn.Sequential(SobelModality(ctx.in_chans), ctx.build_student())

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        teacher = frozen(ctx.load_teacher())
        student = self._student(ctx)
        layer = c.layer or _last_stage(student[1])
        s_name, t_name = f"1.{layer}", layer
        s_mod, t_mod = dict(student.named_modules()).get(s_name), dict(teacher.named_modules()).get(t_name)
        if s_mod is None or t_mod is None:
            raise ValueError(f"gupta2015cross: layer {layer!r} is not a module of both the student and the teacher")
        adapter = nn.Conv2d(_out_channels(s_mod), _out_channels(t_mod), 1)
        unlabelled = torch.cat([b.cpu() for b in ctx.calibration_batches(10 ** 5)])

        def loss(s: ModelOutput, _y, t: ModelOutput | None) -> torch.Tensor:
            return transfer_loss(s.features[s_name], t.features[t_name], adapter)

        last_only = TrainHooks(selectable=lambda step, total: step == total)   # val accuracy cannot judge features
        head = [p for m in student.modules() if isinstance(m, nn.Linear) for p in m.parameters()]
        for p in head:   # the classifier is not reached by the feature loss: trained in the fine-tuning only
            p.requires_grad_(False)
        transfer = distil(ctx, student, loss, teacher=teacher, inputs=unlabelled, labels=None,
                          feature_pairs=((s_name, t_name),), extra_modules=adapter, hooks=last_only,
                          stage="supervision_transfer")
        for p in head:
            p.requires_grad_(True)
        x_share, y_share = ctx.labelled_subset(c.labelled_share)
        epochs = c.share_passes_per_budget_epoch * ctx.epochs_scratch
        report = ctx.train_fn(student, epochs=epochs, inputs=x_share, labels=y_share, stage="finetune_share")
        out = compressed(student, report, note=f"student on the Sobel-magnitude modality, pre-trained by regressing the "
                                               f"teacher's {layer} features on unlabelled image pairs, fine-tuned on "
                                               f"{len(x_share)} labelled images",
                         labelled_images=len(x_share), transfer_images=len(unlabelled),
                         transfer_val_top1_pct=transfer.val_top1_acc_pct)
        if c.share_only_control:
            alone = self._student(ctx)
            alone_report = ctx.train_fn(alone, epochs=epochs, inputs=x_share, labels=y_share,
                                        stage="control:share-only")
            out.controls["share-only"] = compressed(alone, alone_report, note=f"the same student on the Sobel-magnitude "
                                                                              f"modality trained on the {len(x_share)} "
                                                                              "labelled images alone")
        return out


def _out_channels(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(module).__name__} has no convolution: cannot size the adapter")
    return convs[-1].out_channels


def _last_stage(model: nn.Module) -> str:
    stages = sorted((int(n[5:]), n) for n, _ in model.named_children() if n.startswith("stage") and n[5:].isdigit())
    if not stages:
        raise ValueError(f"{type(model).__name__} has no stage<N> modules: set the gupta2015cross layer")
    return stages[-1][1]
