"""nayak2019zero: class similarity from the teacher's last layer, Dirichlet soft labels, data impressions
that lower their objective, and KD that never touches the real training split."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mcbench.benchmarks.archs import ArchSpec, build
from mcbench.benchmarks.train import TrainData
from mcbench.methods.distillation.nayak2019zero import class_similarity, data_impressions, dirichlet_targets
from mcbench.methods.registry import REGISTRY

KEY = "nayak2019zero"
SMALL = dict(num_impressions=60, iterations=20, batch_size=30, kd_epochs_per_budget_epoch=2)


def test_class_similarity_is_row_normalised_cosine():
    w = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    c = class_similarity(w)
    # row 0 cosines: 1, 0.7071, -1 -> min-max: 1, (0.7071 + 1) / 2, 0
    assert c[0].tolist() == pytest.approx([1.0, (2 ** -0.5 + 1) / 2, 0.0], abs=1e-6)
    assert torch.allclose(c.diagonal(), torch.ones(3))
    assert (c >= 0).all() and (c <= 1).all()


def test_dirichlet_targets_follow_the_class_similarity():
    sim = torch.tensor([[1.0, 0.8, 0.0], [0.5, 1.0, 0.0], [0.0, 0.1, 1.0]])
    y, cls = dirichlet_targets(sim, 2000, (1.0,), torch.Generator().manual_seed(0))
    assert y.shape == (6000, 3) and torch.allclose(y.sum(1), torch.ones(6000), atol=1e-5)
    # E[y] = alpha / sum(alpha) for Dir(alpha): class 0 -> (1, .8, ~0) / 1.8
    mean0 = y[cls == 0].mean(0)
    assert mean0.tolist() == pytest.approx([1 / 1.8, 0.8 / 1.8, 0.0], abs=0.03)
    y2, _ = dirichlet_targets(sim, 10, (1.0, 0.1), torch.Generator().manual_seed(0))
    assert len(y2) == 30


def test_impressions_lower_their_objective_and_have_the_task_shape(digits):
    torch.manual_seed(0)
    teacher = build(ArchSpec("cnn", (8, 16)), 1, 10, (8, 8)).eval()
    y, _ = dirichlet_targets(class_similarity(teacher.fc.weight.detach()), 4, (1.0, 0.1), torch.Generator().manual_seed(0))
    x, first, last, _ = data_impressions(teacher, y, (1, 8, 8), iterations=40, batch_size=20, lr=0.05, temperature=20.0)
    assert x.shape == (40, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    assert last < first


@pytest.fixture
def poisoned_training_split(smoke_harness):
    """The real training split replaced by NaNs: training on it would diverge (and raise)."""
    smoke_harness.trained("teacher", 0)
    real = smoke_harness.data
    smoke_harness.data = TrainData(torch.full_like(real.x_train, float("nan")), real.y_train, real.x_val, real.y_val)
    yield smoke_harness
    smoke_harness.data = real


@pytest.mark.slow
def test_zero_shot_kd_never_touches_the_training_split(poisoned_training_split):
    method = REGISTRY.create(KEY, **SMALL)
    assert type(method).data_free
    ctx = poisoned_training_split.context(0, method)
    assert ctx.data_free
    out = method.apply(ctx)
    assert out.extra["impressions"] == 60
    assert out.extra["impression_objective_last"] < out.extra["impression_objective_first"]
    assert [e.stage for e in ctx.ledger.entries if not e.upstream] == ["data_impressions", "kd_impressions"]
    for p in out.model.parameters():
        assert torch.isfinite(p).all()
