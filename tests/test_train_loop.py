"""Training-loop extension points on a tiny model (digits): each argument does what it says."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcbench.benchmarks.archs import ArchSpec, build
from mcbench.benchmarks.tasks import Recipe
from mcbench.benchmarks.train import RealDataWithheld, TrainData, train
from mcbench.methods.protocols import ModelOutput, StepInfo, TrainHooks

RECIPE = Recipe(epochs_scratch=2, epochs_finetune=1, batch_size=128, lr=5e-3)


@pytest.fixture(scope="module")
def data(digits):
    return TrainData(digits.x_train[:512], digits.y_train[:512], digits.x_val, digits.y_val)


def tiny(seed: int = 0, widths=(4, 8)) -> nn.Module:
    torch.manual_seed(seed)
    return build(ArchSpec("cnn", widths), 1, 10, (8, 8))


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_explicit_inputs_and_optimizer_factory_reproduce_the_default_bit_for_bit(data):
    ref, a, b = tiny(), tiny(), tiny()
    r0 = train(ref, data, RECIPE, epochs=2, seed=3)
    train(a, data, RECIPE, epochs=2, seed=3, inputs=data.x_train, labels=data.y_train)
    train(b, data, RECIPE, epochs=2, seed=3,
          optimizer=lambda p: torch.optim.AdamW(p, lr=RECIPE.lr, weight_decay=RECIPE.weight_decay))
    assert same_weights(ref, a) and same_weights(ref, b)
    assert r0.steps_run == 2 * 4 and r0.samples_seen == 2 * 512 and r0.epochs_run == 2
    assert len(r0.val_acc_per_epoch) == 2 and r0.val_top1_acc_pct == max(r0.val_acc_per_epoch)
    assert r0.val_acc_per_epoch[r0.best_epoch] == r0.val_top1_acc_pct


def test_extra_modules_are_trained_with_the_model_and_stay_outside_it(data):
    student, teacher = tiny(0), tiny(1, widths=(6, 12))
    regressor = nn.Conv2d(4, 6, 1)
    before = regressor.weight.detach().clone()
    grads: list[float] = []

    def loss(s: ModelOutput, y, t: ModelOutput) -> torch.Tensor:
        return F.mse_loss(regressor(s.features["stage1"]), t.features["stage1"]) + F.cross_entropy(s.logits, y)

    def before_step(model, info):
        grads.append(regressor.weight.grad.abs().sum().item())

    train(student, data, RECIPE, epochs=1, seed=0, loss=loss, teacher=teacher, feature_layers=("stage1",),
          extra_modules=regressor, hooks=TrainHooks(before_step=before_step))
    assert grads and all(g > 0 for g in grads)
    assert not torch.equal(before, regressor.weight)
    assert all(p is not regressor.weight for p in student.parameters())


def test_feature_pairs_key_features_by_each_side_name(data):
    student, teacher = tiny(0), nn.Sequential()  # teacher: a wrapper with different module names
    teacher.add_module("body", tiny(1, widths=(6, 12)))
    seen: dict[str, tuple] = {}

    def loss(s: ModelOutput, y, t: ModelOutput) -> torch.Tensor:
        seen["student"], seen["teacher"] = tuple(s.features), tuple(t.features)
        seen["shapes"] = (s.features["stage2"].shape[1], t.features["body.stage1"].shape[1])
        return F.cross_entropy(s.logits, y)

    train(student, data, RECIPE, epochs=1, seed=0, loss=loss, teacher=teacher, feature_pairs=(("stage2", "body.stage1"),))
    assert seen["student"] == ("stage2",) and seen["teacher"] == ("body.stage1",)
    assert seen["shapes"] == (8, 6)
    with pytest.raises(ValueError, match="not found"):
        train(tiny(), data, RECIPE, epochs=1, seed=0, loss=loss, teacher=teacher, feature_pairs=(("stage2", "stage9"),))


def test_unlabelled_inputs_reach_the_loss_as_none_and_max_steps_caps(data):
    targets, infos = [], []
    x = torch.rand(300, 1, 8, 8)

    def loss(s: ModelOutput, y, t) -> torch.Tensor:
        targets.append(y)
        return s.logits.pow(2).mean()

    r = train(tiny(), data, RECIPE, epochs=5, seed=0, loss=loss, inputs=x, max_steps=4,
              hooks=TrainHooks(after_step_info=lambda m, info: infos.append(info)))
    assert targets and all(y is None for y in targets)
    assert r.steps_run == 4 and len(targets) == 4 and r.samples_seen == 128 + 128 + 44 + 128
    assert r.epochs_run == 2 and len(r.val_acc_per_epoch) == 2  # a partial last epoch is validated too
    assert [i.step for i in infos] == [1, 2, 3, 4] and {i.total_steps for i in infos} == {4}
    assert [i.epoch for i in infos] == [0, 0, 0, 1]
    with pytest.raises(ValueError, match="labels"):   # the default loss needs labels
        train(tiny(), data, RECIPE, epochs=1, seed=0, inputs=x)


def test_before_step_sees_gradients_before_the_update_and_the_scheduled_lr(data):
    model = tiny()
    infos: list[StepInfo] = []
    frozen_before = model.fc.weight.detach().clone()

    def before_step(m, info):
        assert m.fc.weight.grad is not None and m.fc.weight.grad.abs().sum() > 0
        infos.append(info)
        m.fc.weight.grad = None   # a hook can veto an update: fc must not move
        if m.fc.bias.grad is not None:
            m.fc.bias.grad = None

    train(model, data, RECIPE, epochs=2, seed=0, hooks=TrainHooks(before_step=before_step),
          optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    assert torch.equal(model.fc.weight, frozen_before)
    assert infos[0].lr == pytest.approx(0.1) and infos[0].step == 1 and infos[-1].step == infos[-1].total_steps == 8
    lrs = [i.lr for i in infos]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))   # cosine decay, given to the hook


def test_old_style_after_step_still_called(data):
    calls = []
    train(tiny(), data, RECIPE, epochs=1, seed=0, hooks=TrainHooks(after_step=lambda m, s, t: calls.append((s, t))))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_data_free_training_refuses_the_real_split_and_keeps_the_last_epoch(data):
    with pytest.raises(RealDataWithheld, match="data-free"):
        train(tiny(), data, RECIPE, epochs=1, seed=0, allow_real_train=False)
    r = train(tiny(), data, RECIPE, epochs=3, seed=0, inputs=data.x_train, labels=data.y_train,
              allow_real_train=False, select_on_val=False)
    assert r.best_epoch == 2 and r.val_top1_acc_pct == r.val_acc_per_epoch[-1]


class _WithFiveD(nn.Module):
    """A tiny CNN plus a 5-D parameter (as yang2020searching's value logits) that channels_last must leave alone."""

    def __init__(self):
        super().__init__()
        self.net = tiny()
        self.logits = nn.Parameter(torch.zeros(2, 1, 1, 1, 3))

    def forward(self, x):
        return self.net(x) * (1 + self.logits.mean())


def test_channels_last_training_is_recorded_numerics_not_a_different_model(data):
    """channels_last lays out 4-D tensors in NHWC during training only: the model comes back contiguous, a
    5-D parameter is untouched, and the result matches contiguous training up to float reordering."""
    seen: list[bool] = []   # the second conv's weight (8x4x3x3: NCHW and NHWC strides differ) during training
    hooks = TrainHooks(after_step=lambda m, *_: seen.append(
        m.net.stage2[0].weight.is_contiguous(memory_format=torch.channels_last) and not m.net.stage2[0].weight.is_contiguous()))
    a, b = _WithFiveD(), _WithFiveD()
    b.load_state_dict(a.state_dict())
    ra = train(a, data, RECIPE, epochs=2, seed=3, memory_format="contiguous")
    rb = train(b, data, RECIPE, epochs=2, seed=3, memory_format="channels_last", hooks=hooks)
    assert seen and all(seen), "training did not run in channels_last"
    assert all(p.is_contiguous() for p in b.parameters())   # handed back ordinary
    for k, v in a.net.state_dict().items():
        assert torch.allclose(v, b.net.state_dict()[k], rtol=1e-3, atol=1e-4), k
    assert abs(ra.val_top1_acc_pct - rb.val_top1_acc_pct) <= 1.0
    with pytest.raises(ValueError, match="precision"):
        train(tiny(), data, RECIPE, epochs=1, seed=3, precision="fp8")
    with pytest.raises(ValueError, match="fp16 needs --device cuda"):
        train(tiny(), data, RECIPE, epochs=1, seed=3, precision="fp16")
