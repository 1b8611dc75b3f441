"""romero2014fitnets: hints through a trained, undeployed regressor, then KD with annealed lambda."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mcbench.benchmarks.train import accuracy_pct
from mcbench.methods.distillation.romero2014fitnets import Regressor, fitnet_kd_loss, hint_loss
from mcbench.methods.registry import REGISTRY

KEY = "romero2014fitnets"


@pytest.fixture(scope="module")
def fitnet(smoke_harness):
    method = REGISTRY.create(KEY)
    torch.manual_seed(0)
    ctx = smoke_harness.context(0, method)
    return method, method.apply(ctx), ctx


def test_registered_with_its_variant():
    entry = REGISTRY.get(KEY)
    assert entry.family == "distillation" and entry.cls.arch_roles == ("student_thin_deep",)


def test_regressor_gets_gradients_is_trained_and_is_not_deployed(fitnet, smoke_harness):
    method, out, _ = fitnet
    trace = method.trace
    regressor = trace["regressor"]
    assert trace["regressor_grad_norms"] and min(trace["regressor_grad_norms"]) > 0
    assert any(not torch.equal(v, regressor.state_dict()[k]) for k, v in trace["regressor_init"].items())
    deployed = {id(p) for p in out.model.parameters()}
    assert not deployed & {id(p) for p in regressor.parameters()}
    fresh = smoke_harness.build("student_thin_deep")
    assert out.model.state_dict().keys() == fresh.state_dict().keys()   # the thin-and-deep student, nothing more
    assert out.extra["regressor_params"] == sum(p.numel() for p in regressor.parameters()) > 0


def test_hint_loss_decreases_in_stage_one(fitnet):
    method, out, _ = fitnet
    losses = method.trace["hint_losses"]
    assert len(losses) > 10
    assert out.extra["hint_loss_last"] < 0.7 * out.extra["hint_loss_first"]
    assert out.extra["guided_layer"] == "stage2" and out.extra["hint_layer"] == "stage2"


def test_lambda_is_annealed_from_4_to_1_and_both_stages_are_costed(fitnet):
    method, out, ctx = fitnet
    lams = method.trace["lambdas"]
    assert lams[0] == 4.0 and lams[-1] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lams, lams[1:]))
    assert [e.stage for e in ctx.ledger.entries if not e.upstream] == ["hint", "kd"]


def test_student_learns(fitnet, digits):
    _, out, _ = fitnet
    assert accuracy_pct(out.model, digits.x_val, digits.y_val) > 60.0   # chance is 10%


def test_regressor_kernel_maps_guided_to_hint_shape_across_layer_names():
    guided, hint = torch.randn(2, 16, 8, 8), torch.randn(2, 128, 4, 4)
    r = Regressor(guided.shape, hint.shape)
    assert r.conv.kernel_size == (5, 5) and r(guided).shape == hint.shape
    with pytest.raises(ValueError, match="cannot enlarge"):
        Regressor(hint.shape, guided.shape)
    assert hint_loss(guided, r(guided).detach(), r).item() == pytest.approx(0.0)


def test_method_accepts_differently_named_guided_and_hint_layers(smoke_harness):
    method = REGISTRY.create(KEY, guided_layer="stage1.1", hint_layer="stage2", hint_epochs_fraction=0.2)
    torch.manual_seed(0)
    ctx = smoke_harness.context(0, method)
    ctx.epochs_scratch = 1
    out = method.apply(ctx)
    assert method.trace["regressor"].conv.kernel_size == (5, 5)   # 8x8 guided -> 4x4 hint
    assert out.extra["hint_loss_last"] < out.extra["hint_loss_first"]


def test_kd_loss_is_eq2_without_tau_squared():
    z = torch.randn(4, 10)
    y = torch.randint(0, 10, (4,))
    assert fitnet_kd_loss(z, z, y, 3.0, 4.0).item() == pytest.approx(nn.functional.cross_entropy(z, y).item(), rel=1e-6)
    zt = torch.randn(4, 10)
    d = fitnet_kd_loss(z, zt, y, 3.0, 2.0) - fitnet_kd_loss(z, zt, y, 3.0, 1.0)
    assert d.item() > 0   # the soft term is weighted by lambda
