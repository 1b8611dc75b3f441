"""hinton2015distilling, Section 3's omitted-class experiment: a transfer set without one class,
then that class's output bias raised by the shift that scores best on validation."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mcbench.methods.distillation.hinton2015distilling import best_bias_shift, kd_loss, kd_loss_without_class
from mcbench.methods.registry import REGISTRY

KEY = "hinton2015distilling"


def test_omitted_class_examples_carry_no_loss_and_no_gradient():
    torch.manual_seed(0)
    zs = torch.randn(6, 4, requires_grad=True)
    zt = torch.randn(6, 4)
    y = torch.tensor([0, 3, 1, 3, 2, 0])
    loss = kd_loss_without_class(zs, zt, y, 20.0, 0.1, omitted=3)
    keep = torch.tensor([0, 2, 4, 5])
    assert loss.item() == pytest.approx(kd_loss(zs[keep], zt[keep], y[keep], 20.0, 0.1).item(), rel=1e-6)
    loss.backward()
    assert torch.equal(zs.grad[[1, 3]], torch.zeros(2, 4)) and zs.grad[keep].abs().sum() > 0
    only_omitted = kd_loss_without_class(zs, zt, torch.full((6,), 3), 20.0, 0.1, omitted=3)
    assert only_omitted.item() == 0.0


def test_bias_shift_is_the_grid_value_that_scores_best_and_is_kept():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, 0.0, -2.0]))
    # score: class-2 logit closest to 0.5 (peaks at shift 2.5)
    score = lambda m: -abs(m[1].bias[2].item() - 0.5)   # noqa: E731
    shift, before, after = best_bias_shift(model, 2, [0.5 * i for i in range(1, 9)], score)
    assert shift == 2.5 and before == -2.5 and after == 0.0
    assert model[1].bias.tolist() == [1.0, 0.0, 0.5]


def test_an_unknown_class_is_refused():
    with pytest.raises(ValueError, match="omit_class 12"):
        REGISTRY.create(KEY, omit_class=12).apply(_Ctx())


class _Ctx:
    num_classes = 10

    def __getattr__(self, name):   # the main distillation is stubbed: only the class check is reached
        if name in ("load_teacher", "build_student"):
            return lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        if name == "train_fn":
            return lambda model, **kw: None
        if name in ("epochs_scratch",):
            return 1
        if name == "device":
            return torch.device("cpu")
        raise AttributeError(name)


@pytest.mark.slow
def test_omitted_class_controls_on_digits(smoke_harness):
    method = REGISTRY.create(KEY, omit_class=3, temperature=20.0, alpha=0.1)
    out = method.apply(smoke_harness.context(0, method))
    assert set(out.controls) == {"omit-3", "omit-3-uncorrected"}
    facts = out.controls["omit-3"].extra
    assert facts["bias_shift"] >= 0 and facts["val_top1_pct_corrected"] >= facts["val_top1_pct_uncorrected"]
    corrected, plain = out.controls["omit-3"].model, out.controls["omit-3-uncorrected"].model
    diff = [(a - b).abs().max().item() for a, b in zip(corrected.state_dict().values(), plain.state_dict().values())]
    assert sum(d > 0 for d in diff) <= 1   # only the final bias differs
