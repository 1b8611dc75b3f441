"""bucilua2006model: MUNGE pseudo data near real samples, within their ranges, labelled by an ensemble."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mcbench.methods.distillation.bucilua2006model import Ensemble, munge, nearest_neighbours
from mcbench.methods.registry import REGISTRY

KEY = "bucilua2006model"


def test_nearest_neighbours_excludes_itself():
    x = torch.tensor([[0.0], [1.0], [5.0], [5.5]])
    assert nearest_neighbours(x, chunk=3).tolist() == [1, 0, 3, 2]


def test_munge_samples_stay_within_the_data_ranges_and_near_their_source(digits):
    x = digits.x_train[:300]
    g = torch.Generator().manual_seed(0)
    pseudo = munge(x, k=3, p=0.5, s=1.0, generator=g)
    assert pseudo.shape == (900, *x.shape[1:])
    flat, pf = x.flatten(1), pseudo.flatten(1)
    assert (pf >= flat.min(0).values).all() and (pf <= flat.max(0).values).all()
    # every pseudo example is closer to its source than a random other example is, on average
    src = flat.repeat(3, 1)
    d_own = (pf - src).norm(dim=1).mean()
    d_other = (pf - src[torch.randperm(len(src), generator=g)]).norm(dim=1).mean()
    assert d_own < 0.8 * d_other
    assert not torch.equal(pf, src)   # something was perturbed


def test_munge_with_p_zero_like_small_p_changes_few_attributes():
    x = torch.rand(50, 1, 4, 4)
    pseudo = munge(x, k=1, p=0.05, s=1.0, generator=torch.Generator().manual_seed(1))
    changed = (pseudo != x).float().mean().item()
    assert 0.0 < changed < 0.15


def test_ensemble_averages_probabilities():
    a, b = nn.Linear(3, 4), nn.Linear(3, 4)
    x = torch.randn(5, 3)
    expected = (a(x).softmax(1) + b(x).softmax(1)) / 2
    assert torch.allclose(Ensemble([a, b])(x).softmax(1), expected, atol=1e-6)


@pytest.mark.slow
def test_student_mimics_the_ensemble_which_is_measured_as_a_control(smoke_harness):
    method = REGISTRY.create(KEY, ensemble_seeds=[0, 1], munge_source=200, rounds=2)
    torch.manual_seed(0)
    ctx = smoke_harness.context(0, method)
    out = method.apply(ctx)
    assert out.extra["pseudo_images"] == 400 and out.extra["real_images"] == len(smoke_harness.data.x_train)
    assert set(out.controls) == {"ensemble"}
    assert out.extra["ensemble_params"] == 2 * sum(p.numel() for p in smoke_harness.build("baseline").parameters())
    assert [e.stage for e in ctx.ledger.entries if not e.upstream] == ["munge", "mimic"]
