"""yim2017gift: FSP matrices (Eq. (1)), their L2 loss (Eq. (2)), two stages, and a scratch control."""
from __future__ import annotations

import pytest
import torch

from mcbench.methods.distillation.yim2017gift import epochs_to_reach, fsp_loss, fsp_matrix, stage_sections
from mcbench.methods.registry import REGISTRY

KEY = "yim2017gift"


def test_fsp_matrix_matches_hand_computation():
    f1 = torch.tensor([1.0, 2.0]).view(1, 1, 1, 2)                 # m = 1 channel, 1x2 positions
    f2 = torch.tensor([[3.0, 4.0], [0.0, 1.0]]).view(1, 2, 1, 2)   # n = 2 channels
    g = fsp_matrix(f1, f2)
    assert g.shape == (1, 1, 2)
    assert g.flatten().tolist() == pytest.approx([(1 * 3 + 2 * 4) / 2, (1 * 0 + 2 * 1) / 2])


def test_fsp_loss_is_weighted_squared_frobenius_distance_batch_mean():
    torch.manual_seed(0)
    s = [(torch.rand(2, 3, 4, 4), torch.rand(2, 5, 4, 4)), (torch.rand(2, 5, 2, 2), torch.rand(2, 6, 2, 2))]
    t = [(torch.rand(2, 3, 4, 4), torch.rand(2, 5, 4, 4)), (torch.rand(2, 5, 2, 2), torch.rand(2, 6, 2, 2))]
    by_hand = 0.0
    for lam, (s1, s2), (t1, t2) in zip([1.0, 3.0], s, t):
        for b in range(2):
            gs = torch.einsum("ihw,jhw->ij", s1[b], s2[b]) / (s1.shape[2] * s1.shape[3])
            gt = torch.einsum("ihw,jhw->ij", t1[b], t2[b]) / (t1.shape[2] * t1.shape[3])
            by_hand += lam * ((gt - gs) ** 2).sum().item() / 2
    assert fsp_loss(s, t, [1.0, 3.0]).item() == pytest.approx(by_hand, rel=1e-5)


def test_fsp_matches_the_flow_not_the_features():
    """The same positions in another order give the same FSP matrix: the loss is zero although a
    feature-matching loss (FitNets) would not be."""
    torch.manual_seed(1)
    f1, f2 = torch.rand(2, 3, 4, 4), torch.rand(2, 5, 4, 4)
    perm = torch.randperm(16)
    p1 = f1.flatten(2)[:, :, perm].view_as(f1)
    p2 = f2.flatten(2)[:, :, perm].view_as(f2)
    assert fsp_loss([(p1, p2)], [(f1, f2)]).item() == pytest.approx(0.0, abs=1e-10)
    assert (p1 - f1).abs().sum() > 0
    with pytest.raises(ValueError, match="channel counts"):
        fsp_loss([(f1, f2)], [(torch.rand(2, 4, 4, 4), f2)])


def test_epochs_to_reach():
    assert epochs_to_reach([50.0, 80.0, 90.0], 80.0) == 2
    assert epochs_to_reach([50.0, 60.0], 80.0) is None


@pytest.mark.slow
def test_two_stages_lower_fsp_and_record_the_scratch_control(smoke_harness):
    method = REGISTRY.create(KEY)
    torch.manual_seed(0)
    ctx = smoke_harness.context(0, method)
    out = method.apply(ctx)
    assert out.extra["fsp_sections"] == [["pool1", "stage2"], ["pool2", "stage3"]]
    assert out.extra["fsp_loss_last"] < 0.7 * out.extra["fsp_loss_first"]
    assert [e.stage for e in ctx.ledger.entries if not e.upstream] == ["fsp", "task", "control:scratch"]
    assert [e.stage for e in ctx.ledger.entries if e.upstream] == ["student_thin_deep"]   # the deeper teacher, cached
    assert len(out.extra["fsp_val_acc_per_epoch"]) == len(out.extra["scratch_val_acc_per_epoch"]) == ctx.epochs_scratch
    assert set(out.controls) == {"scratch"}
    student = smoke_harness.build("student")
    assert out.model.state_dict().keys() == student.state_dict().keys()
    assert stage_sections(student) == [("pool1", "stage2"), ("pool2", "stage3")]
