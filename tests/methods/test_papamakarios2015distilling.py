"""papamakarios2015distilling: outputs and input derivatives of an ensemble matched on scarce data."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcbench.methods.distillation.papamakarios2015distilling import (InputGradTap, derivative_matching_loss,
                                                                     projected_input_gradient, teacher_targets)
from mcbench.methods.registry import REGISTRY

KEY = "papamakarios2015distilling"


def test_projected_derivative_of_a_linear_softmax_matches_hand_computation():
    # log p = Wx - logsumexp(Wx): d(u . log p)/dx = W^T (u - (sum u) p)
    torch.manual_seed(0)
    w = torch.randn(3, 4)
    x = torch.randn(2, 4, requires_grad=True)
    u = torch.randn(2, 3)
    logp = F.log_softmax(x @ w.T, 1)
    g = projected_input_gradient(logp, x, u, create_graph=False)
    p = logp.exp().detach()
    expected = (u - u.sum(1, keepdim=True) * p) @ w
    assert torch.allclose(g, expected, atol=1e-6)


def test_loss_is_kl_plus_the_squared_derivative_gap_and_vanishes_for_the_teacher_itself():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.randn(5, 1, 4, 4)
    u = torch.randn(5, 3)
    probs, grads = teacher_targets(teacher, x, u)
    xs = x.clone().requires_grad_(True)
    same = derivative_matching_loss(teacher(xs), xs, probs, grads, u, lam=2.0)
    assert same.item() == pytest.approx(0.0, abs=1e-6)

    student = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    xs = x.clone().requires_grad_(True)
    logits = student(xs)
    kl = F.kl_div(F.log_softmax(logits, 1), probs, reduction="batchmean")
    g = projected_input_gradient(F.log_softmax(logits, 1), xs, u, create_graph=True)
    gap = (g - grads).pow(2).flatten(1).sum(1).mean()
    total = derivative_matching_loss(logits, xs, probs, grads, u, lam=2.0)
    assert total.item() == pytest.approx((kl + 2.0 * gap).item(), rel=1e-5) and gap.item() > 0


def test_the_derivative_term_trains_the_student_through_a_second_backward_pass():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(), nn.Flatten(),
                            nn.Linear(64, 3)).eval()
    tap = InputGradTap(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Tanh(), nn.Flatten(),
                                     nn.Linear(32, 3)))
    x, u = torch.randn(6, 1, 4, 4), torch.randn(6, 3)
    probs, grads = teacher_targets(teacher, x, u)
    logits = tap(x)
    assert tap.last_x is not None and tap.last_x.requires_grad
    only_derivatives = derivative_matching_loss(logits, tap.last_x, probs, grads, u, lam=1.0) - \
        F.kl_div(F.log_softmax(logits, 1), probs, reduction="batchmean")
    only_derivatives.backward()
    conv = tap.model[0]
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    kept = tap.last_x
    with torch.no_grad():   # evaluation passes straight through and leaves the training batch alone
        tap(torch.randn(2, 1, 4, 4))
    assert tap.last_x is kept


@pytest.mark.slow
def test_method_on_digits_uses_a_small_transfer_set_and_keeps_a_control(smoke_harness):
    method = REGISTRY.create(KEY, ensemble_seeds=[0, 1], transfer_size=100, passes_per_budget_epoch=2)
    out = method.apply(smoke_harness.context(0, method))
    assert out.extra["transfer_images"] == 100 and set(out.controls) == {"no-derivatives"}
    assert not isinstance(out.model, InputGradTap)
