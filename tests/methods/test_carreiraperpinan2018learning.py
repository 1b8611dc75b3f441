"""LC pruning (Carreira-Perpinan & Idelbayev 2018): exact C steps, the growing penalty, the budget reached."""
from __future__ import annotations

import itertools

import pytest
import torch

from mcbench.methods.flows import lc
from mcbench.methods.pruning import carreiraperpinan2018learning as P
from mcbench.methods.registry import REGISTRY


def _sq(v, theta):
    return float(((v - theta) ** 2).sum())


def test_registered():
    assert REGISTRY.get("carreiraperpinan2018learning").family == "pruning"


def test_l0_constraint_c_step_is_the_exact_projection():
    torch.manual_seed(0)
    v = torch.randn(9)
    for kappa in (0, 1, 3, 5, 9):
        theta = P.l0_constraint(v, kappa)
        assert int((theta != 0).sum()) == kappa
        best = min(_sq(v, torch.where(torch.isin(torch.arange(9), torch.tensor(s, dtype=torch.long)), v, 0 * v))
                   for s in itertools.combinations(range(9), kappa))
        assert _sq(v, theta) == pytest.approx(best, abs=1e-6)
        assert torch.equal(theta[theta != 0], v[theta != 0])        # kept entries keep their value


def test_l0_penalty_c_step_minimises_over_every_support():
    torch.manual_seed(1)
    v, alpha, mu = torch.randn(8), 0.3, 2.0
    theta = P.l0_penalty(v, alpha, mu)
    obj = lambda t: 0.5 * mu * _sq(v, t) + alpha * int((t != 0).sum())  # noqa: E731
    best = min(obj(v * torch.tensor(mask, dtype=v.dtype)) for mask in itertools.product((0, 1), repeat=8))
    assert obj(theta) == pytest.approx(best, abs=1e-6)


def test_l1_forms_are_exact():
    torch.manual_seed(2)
    v = torch.randn(50)
    kappa = 0.3 * float(v.abs().sum())
    theta = P.l1_constraint(v, kappa)
    assert float(theta.abs().sum()) == pytest.approx(kappa, rel=1e-5)    # on the ball's boundary
    for _ in range(200):                                               # no feasible point is closer
        z = theta + 0.05 * torch.randn(50)
        z = z * min(1.0, kappa / float(z.abs().sum()))
        assert _sq(v, theta) <= _sq(v, z) + 1e-6
    assert torch.equal(P.l1_constraint(v, 1e6), v)                     # inside the ball: itself
    alpha, mu = 0.2, 1.5
    t = P.l1_penalty(v, alpha, mu)
    obj = lambda z: 0.5 * mu * _sq(v, z) + alpha * float(z.abs().sum())  # noqa: E731
    for _ in range(200):
        assert obj(t) <= obj(t + 0.05 * torch.randn(50)) + 1e-7


def test_joint_c_step_uses_one_budget_over_all_layers():
    v = {"a": torch.tensor([[5.0, -4.0], [0.1, 0.2]]), "b": torch.tensor([0.3, -0.05, 3.0])}
    out = P.joint_c_step("l0_constraint", 3, 0.0)(v, 1.0)
    assert out["a"].tolist() == [[5.0, -4.0], [0.0, 0.0]] and out["b"].tolist() == [0.0, 0.0, 3.0]


def test_mu_schedule_grows_geometrically():
    mus = lc.mu_schedule(1e-3, 4.0, 5)
    assert mus == pytest.approx([1e-3 * 4.0 ** k for k in range(5)])
    assert all(b > a for a, b in zip(mus, mus[1:]))


def test_lc_reaches_the_budget_exactly_with_the_penalty_in_every_l_step():
    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    walk = Walk(out=None)
    ctx = _tiny_context(walk)
    seen: list[float] = []
    inner = ctx.train_fn

    def spy(model, *, epochs, loss=None, **kw):      # the penalty each L step's loss really adds
        from mcbench.methods.protocols import ModelOutput
        x = torch.randn(2, 1, 8, 8)
        out = ModelOutput(model(x))
        y = torch.zeros(2, dtype=torch.long)
        seen.append(float((loss(out, y, None) - torch.nn.functional.cross_entropy(out.logits, y)).detach()))
        return inner(model, epochs=epochs, loss=loss, **kw)

    ctx.train_fn = spy
    out = REGISTRY.create("carreiraperpinan2018learning", keep_fraction=0.2, keep_control=0.0, lc_iterations=2,
                          mu0=1e-2, mu_growth=3.0).apply(ctx)
    assert walk.trained == 2 and not out.controls                      # 2 L steps, one level
    assert out.extra["lc_mu_final"] == pytest.approx(1e-2 * 3.0)
    assert seen[0] > 0 and seen[1] > 0                                  # the quadratic pull is in the loss
    total = sum(m.weight.numel() for m in out.model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    nz = sum(int((m.weight != 0).sum()) for m in out.model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert nz == round(0.2 * total) == out.extra["weights_kept_count"]  # exactly kappa weights survive
    per_layer = out.extra["zeros_fraction_per_layer"]
    assert len(set(round(s, 3) for s in per_layer.values())) > 1       # per-layer sparsity found, not set
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(out.encoded.decode(out.encoded.encode(out.model))(x), out.model(x))


@pytest.mark.slow
def test_lc_moves_weights_towards_the_feasible_set():
    """With the penalty growing the L steps pull w onto theta: ||w - theta||^2 shrinks across iterations."""
    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    ctx = _tiny_context(Walk(out=None))
    model = ctx.load_baseline()
    layers = {n: model.get_submodule(n) for n in P.prunable_layers(model)}
    total = sum(m.weight.numel() for m in layers.values())
    run = lc.learning_compression(ctx, model, layers, P.joint_c_step("l0_constraint", total // 4, 0.0),
                                  iterations=4, mu0=0.05, growth=10.0)
    assert run.mus == pytest.approx([0.05, 0.5, 5.0, 50.0])
    assert run.gaps[-1] < 0.5 * run.gaps[0]


@pytest.mark.slow
def test_second_level_is_a_control_row_at_its_own_budget():
    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    walk = Walk(out=None)
    out = REGISTRY.create("carreiraperpinan2018learning", keep_fraction=0.2, keep_control=0.1,
                          lc_iterations=2).apply(_tiny_context(walk))
    assert walk.trained == 4
    total = sum(m.weight.numel() for m in out.model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert set(out.controls) == {"sparsity90"}
    assert out.controls["sparsity90"].extra["weights_kept_count"] == round(0.1 * total)
