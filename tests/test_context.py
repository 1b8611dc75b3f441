"""Context additions, cost ledger, data-free mode and task variants, through the real harness (digits/smoke)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mcbench.benchmarks.record import ResultRow
from mcbench.benchmarks.runner import set_seed
from mcbench.benchmarks.store import ResultStore
from mcbench.benchmarks.tasks import TASKS
from mcbench.benchmarks.train import RealDataWithheld
from mcbench.methods.protocols import CostLedger, DataWithheld, Method, MethodContext


class _DataFree(Method):
    key, family, data_free = "test_data_free", "distillation", True


class _UsesVariant(Method):
    key, family, arch_roles = "test_variant", "distillation", ("student_thin_deep",)


def _convs(m: nn.Module) -> int:
    return sum(isinstance(x, nn.Conv2d) for x in m.modules())


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_task_variants_are_named_architectures(smoke_harness):
    task = TASKS["digits"]
    assert {"teacher_deep", "student_thin_deep", "student_shallow"} <= set(task.roles())
    thin_deep, shallow, teacher = (task.arch(r) for r in ("student_thin_deep", "student_shallow", "teacher"))
    assert thin_deep.depth > 1 and shallow.depth == 1 and thin_deep.widths == shallow.widths
    assert all(s < t for s, t in zip(thin_deep.widths, teacher.widths))
    ctx = smoke_harness.context(0, _UsesVariant())
    td, t = ctx.build_arch("student_thin_deep"), ctx.build_arch("teacher")
    assert _convs(td) > _convs(t) and _params(td) < _params(t)   # deeper and thinner than the teacher
    with pytest.raises(ValueError, match="not declared"):
        ctx.build_arch("teacher_deep")
    with pytest.raises(ValueError, match="no architecture"):
        task.arch("student_wide")


def test_declared_variants_enter_the_config_hash(smoke_harness):
    from mcbench.methods.registry import REGISTRY

    h = smoke_harness
    specs = h.plan(h.cfg.__class__(task="digits", budget="smoke", methods=["hinton2015distilling"], seeds=[0]))
    assert "archs" not in specs[0].config and "data_free" not in specs[0].config   # unchanged identity
    for key in REGISTRY.keys():
        cls = REGISTRY.get(key).cls
        if cls.arch_roles:
            spec = h.plan(h.cfg.__class__(task="digits", budget="smoke", methods=[key], seeds=[0]))[0]
            assert set(spec.config["archs"]) == set(cls.arch_roles)


def test_calibration_batches_of_a_chosen_size_and_evaluate_on_validation(smoke_harness, digits):
    ctx = smoke_harness.context(0)
    assert len(ctx.calibration_batches()) == smoke_harness.recipe.calibration_batches
    three = ctx.calibration_batches(3)
    assert len(three) == 3 and torch.equal(three[0], digits.x_train[:smoke_harness.recipe.batch_size])

    class Always(nn.Module):
        def __init__(self, k: int):
            super().__init__()
            self.k = k

        def forward(self, x):
            out = torch.zeros(len(x), 10)
            out[:, self.k] = 1
            return out

    for k in (0, 3):   # a constant classifier scores the class frequency of the validation split
        assert ctx.evaluate(Always(k)) == pytest.approx(100 * (digits.y_val == k).float().mean().item())


def test_baseline_init_state_is_the_trained_baselines_start_and_leaves_the_rng_alone(smoke_harness):
    ctx = smoke_harness.context(1)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    init = ctx.baseline_init_state()
    assert torch.equal(torch.get_rng_state(), state)
    set_seed(1)
    expected = smoke_harness.build("baseline").state_dict()
    assert all(torch.equal(init[k], expected[k]) for k in expected)
    other = smoke_harness.context(2).baseline_init_state()
    assert not torch.equal(other["stage1.0.weight"], init["stage1.0.weight"])


def test_data_free_context_withholds_real_data(smoke_harness):
    ctx = smoke_harness.context(0, _DataFree())
    assert ctx.data_free
    for fn in (ctx.calibration_batches, ctx.load_student, lambda: ctx.evaluate(nn.Identity())):
        with pytest.raises(DataWithheld, match="data-free"):
            fn()
    with pytest.raises(RealDataWithheld):
        ctx.train_fn(ctx.build_student(), epochs=1)
    report = ctx.train_fn(ctx.build_student(), epochs=2, inputs=torch.rand(64, 1, 8, 8), labels=torch.randint(0, 10, (64,)),
                          stage="synthetic")
    assert report.best_epoch == 1   # last epoch: no real data selects the model
    assert [e.stage for e in ctx.ledger.entries] == ["synthetic"] and ctx.ledger.entries[0].samples == 128
    assert ctx.ledger.entries[0].epochs == pytest.approx(2.0)


def test_ledger_records_training_and_upstream_cost_separately(smoke_harness):
    ctx = smoke_harness.context(0)
    ctx.load_teacher()
    ctx.load_teacher()   # loaded twice, counted once
    ctx.train_fn(ctx.build_student(), epochs=1, max_steps=3, stage="kd")
    ctx.ledger.add("synthesis", seconds=1.5, samples=10)
    own, up = ctx.ledger.totals(), ctx.ledger.totals(upstream=True)
    stages = [(e.stage, e.upstream) for e in ctx.ledger.entries]
    assert stages == [("teacher", True), ("kd", False), ("synthesis", False)]
    kd = ctx.ledger.entries[1]
    assert kd.samples == 3 * smoke_harness.recipe.batch_size and kd.seconds > 0
    assert own["samples"] == kd.samples + 10 and own["seconds"] == pytest.approx(kd.seconds + 1.5)
    assert up["epochs"] == smoke_harness.recipe.epochs_scratch and up["seconds"] > 0
    with pytest.raises(ValueError):
        CostLedger().add("x", seconds=-1)


def test_hand_built_context_says_what_it_lacks():
    ctx = MethodContext(num_classes=2, in_chans=1, input_size=(4, 4), epochs_scratch=1, epochs_finetune=1,
                        train_fn=None, build_student=nn.Identity, build_baseline=nn.Identity,
                        load_baseline=nn.Identity, load_teacher=nn.Identity, calibration_batches=list)
    with pytest.raises(NotImplementedError, match="load_student"):
        ctx.load_student()
    assert not ctx.data_free and ctx.ledger.entries == []


def test_row_stores_the_ledger(smoke_harness):
    h = smoke_harness
    spec = h.plan(h.cfg.__class__(task="digits", budget="smoke", methods=["student"], seeds=[0]))[0]
    row = h.run(spec)
    stages = json.loads(row.ledger_json)
    assert [s["stage"] for s in stages] == ["student"] and not row.data_free
    assert row.train_epochs_total == h.recipe.epochs_scratch and row.train_samples_total > 0
    assert row.train_seconds_total > 0 and row.upstream_train_seconds == 0
