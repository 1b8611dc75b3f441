"""huang2017like: NST is the MMD between channel-activation distributions (Eq. (3)), plus KD."""
from __future__ import annotations

import math

import pytest
import torch

from mcbench.benchmarks.train import accuracy_pct
from mcbench.methods.distillation.hinton2015distilling import kd_loss
from mcbench.methods.distillation.huang2017like import mmd2, nst_loss
from mcbench.methods.protocols import ModelOutput
from mcbench.methods.registry import REGISTRY

KEY = "huang2017like"


def _maps():
    """Student: 2 channels [3, 4] and [1, 0]; teacher: 1 channel [0, 1]; one image, 1x2 maps."""
    s = torch.tensor([[3.0, 4.0], [1.0, 0.0]]).view(1, 2, 1, 2)
    t = torch.tensor([[0.0, 2.0]]).view(1, 1, 1, 2)
    return s, t


def test_mmd_matches_hand_computation_for_each_kernel():
    s, t = _maps()
    # unit vectors: s1 = (.6, .8), s2 = (1, 0), t1 = (0, 1); inner products s1.s2 = .6, s1.t1 = .8, s2.t1 = 0
    assert mmd2(s, t, "linear").item() == pytest.approx(1.0 + (2 + 2 * 0.6) / 4 - 2 * (0.8 + 0.0) / 2)
    assert mmd2(s, t, "poly").item() == pytest.approx(1.0 + (2 + 2 * 0.36) / 4 - 2 * (0.64 + 0.0) / 2)
    # squared distances 2 - 2 x.y: ss {0, .8, .8, 0}, tt {0}, st {.4, 2}; sigma^2 = their mean = 4/7
    g = lambda d: math.exp(-d / (2 * 4 / 7))  # noqa: E731
    expected = 1.0 + (2 + 2 * g(0.8)) / 4 - 2 * (g(0.4) + g(2.0)) / 2
    assert mmd2(s, t, "gaussian").item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("kernel", ["linear", "poly", "gaussian"])
def test_mmd_compares_distributions_not_channels(kernel):
    """Channels permuted, rescaled or repeated are the same distribution of selectivity patterns: MMD 0.
    A channel-by-channel distance (MSE of normalised maps) would not be zero here."""
    torch.manual_seed(0)
    t = torch.rand(3, 4, 5, 5)
    s = torch.cat([t[:, [2, 0, 3, 1]] * 7.0, t[:, [1, 3, 0, 2]]], dim=1)   # 8 channels vs 4
    assert mmd2(s, t, kernel).item() == pytest.approx(0.0, abs=1e-5)
    assert mmd2(torch.rand(3, 8, 5, 5), t, kernel).item() > 1e-4


def test_mmd_rejects_different_spatial_sizes():
    with pytest.raises(ValueError, match="spatial"):
        mmd2(torch.rand(1, 2, 4, 4), torch.rand(1, 2, 2, 2))


def test_loss_is_kd_plus_half_lambda_mmd():
    s, t = _maps()
    zs, zt, y = torch.randn(1, 10), torch.randn(1, 10), torch.tensor([3])
    total, m = nst_loss(ModelOutput(zs, {"a": s}), y, ModelOutput(zt, {"b": t}), s_layer="a", t_layer="b",
                        kernel="poly", lam=50.0, temperature=4.0, alpha=0.5)
    assert m.item() == pytest.approx(1.04)
    assert total.item() == pytest.approx(kd_loss(zs, zt, y, 4.0, 0.5).item() + 25.0 * 1.04, rel=1e-6)


@pytest.mark.slow
def test_training_lowers_mmd_and_the_student_learns(smoke_harness, digits):
    method = REGISTRY.create(KEY)
    torch.manual_seed(0)
    out = method.apply(smoke_harness.context(0, method))
    assert out.extra["nst_layers"] == ["stage3", "stage3"]
    assert out.extra["mmd2_last"] < 0.8 * out.extra["mmd2_first"]
    assert accuracy_pct(out.model, digits.x_val, digits.y_val) > 60.0   # chance is 10%
