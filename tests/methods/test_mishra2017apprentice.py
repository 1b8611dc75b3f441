"""mishra2017apprentice: a ternary / 4-bit student trained by KD at T=1, with a no-KD control."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcbench.methods.distillation.mishra2017apprentice import (apprentice_loss, freeze_low_precision,
                                                              make_low_precision, ternarize, uniform_symmetric)
from mcbench.methods.registry import REGISTRY

KEY = "mishra2017apprentice"


def test_ternarize_matches_hand_computation():
    w = torch.tensor([0.9, -0.1, 0.05, -0.6, 0.3, 0.0])
    # mean |w| = 1.95 / 6 = 0.325, threshold 0.2275: kept 0.9, -0.6, 0.3 with a = 1.8 / 3 = 0.6
    assert ternarize(w).tolist() == pytest.approx([0.6, 0.0, 0.0, -0.6, 0.6, 0.0])


def test_four_bit_levels():
    w = torch.tensor([0.7, -0.35, 0.1, 0.04])
    # s = 0.7, 7 levels per side: round(w / 0.1) * 0.1
    assert uniform_symmetric(w, 4).tolist() == pytest.approx([0.7, -0.4, 0.1, 0.0], abs=1e-6)
    assert len(torch.unique(uniform_symmetric(torch.randn(1000), 4))) <= 15


@pytest.mark.parametrize("bits,levels", [(2, 3), (4, 15)])
def test_low_precision_layers_train_through_ste_and_freeze_to_few_values(bits, levels):
    torch.manual_seed(0)
    model = make_low_precision(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 3)), bits)
    out = model(torch.randn(2, 1, 8, 8))
    F.cross_entropy(out, torch.tensor([0, 2])).backward()
    shadow = model[0].parametrizations.weight.original
    assert shadow.grad is not None and shadow.grad.abs().sum() > 0   # straight-through to the float weights
    assert len(torch.unique(model[0].weight)) <= levels
    freeze_low_precision(model)
    assert isinstance(model[2].weight, nn.Parameter) and len(torch.unique(model[2].weight)) <= levels


def test_loss_is_beta_ce_plus_gamma_soft_ce_at_t1():
    zs, zt, y = torch.randn(3, 5), torch.randn(3, 5), torch.tensor([0, 4, 2])
    p_t = F.softmax(zt, 1)
    soft_ce = -(p_t * F.log_softmax(zs, 1)).sum(1).mean()
    entropy = -(p_t * F.log_softmax(zt, 1)).sum(1).mean()
    expected = 0.5 * F.cross_entropy(zs, y) + 0.25 * (soft_ce - entropy)   # KL = H(p_T, p_S) - H(p_T)
    assert apprentice_loss(zs, zt, y, 0.5, 0.25).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.slow
def test_ternary_student_and_its_no_kd_control(smoke_harness, digits):
    method = REGISTRY.create(KEY)
    torch.manual_seed(0)
    ctx = smoke_harness.context(0, method)
    out = method.apply(ctx)
    assert out.bits_per_weight == 2.0 and not out.storage_real and not out.compute_real
    for model in (out.model, out.controls["no-kd"].model):
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                assert len(torch.unique(m.weight)) <= 3
    assert [e.stage for e in ctx.ledger.entries if not e.upstream] == ["kd_scheme_B", "control:no-kd"]
