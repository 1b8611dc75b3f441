"""chen2017learning: the wavelet-like auto-encoder reconstructs its input; the backbone runs at half size."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compact_checks import forward_and_one_step
from mcbench.methods.acceleration.chen2017learning import WaveletLikeAutoEncoder
from mcbench.methods.registry import REGISTRY

KEY = "chen2017learning"


@pytest.mark.slow
def test_decomposition_reconstructs_its_input_and_puts_the_energy_in_the_low_band(digits):
    """Section 3: trained with reconstruction + energy losses, (I_L, I_H) at half size rebuild the image."""
    torch.manual_seed(0)
    wae = WaveletLikeAutoEncoder(1)
    x = digits.x_train[:512]
    opt = torch.optim.Adam(wae.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        low, high = wae.encode(x)
        rec = wae.decode(low, high, (8, 8))
        (F.mse_loss(rec, x) + 0.1 * high.pow(2).mean()).backward()
        opt.step()
    with torch.no_grad():
        low, high = wae.encode(digits.x_test)
        rec = wae.decode(low, high, (8, 8))
    assert low.shape[-2:] == high.shape[-2:] == (4, 4)
    assert F.mse_loss(rec, digits.x_test) < 0.1 * digits.x_test.var()     # held-out images reconstruct
    assert low.pow(2).mean() > 3 * high.pow(2).mean()                       # low band carries the energy


def test_backbone_sees_the_half_resolution_low_band_and_the_model_trains(smoke_harness):
    ctx = smoke_harness.context(0)
    model = REGISTRY.create(KEY).build(ctx)
    seen = []
    model.backbone.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape))
    model.eval()(torch.randn(2, 1, 8, 8))
    assert seen[-1] == (2, 1, 4, 4)
    model.train()(torch.randn(2, 1, 8, 8))
    assert set(model.aux) == {"reconstruction", "energy"}
    forward_and_one_step(model, 1, (8, 8), 10)


def test_backbone_macs_fall_about_fourfold(smoke_harness):
    from mcbench.benchmarks.complexity import count

    ctx = smoke_harness.context(0)
    base, model = ctx.build_baseline(), REGISTRY.create(KEY).build(ctx)
    x28 = (1, (28, 28))
    full = count(base, *x28).macs
    half = count(model.backbone, 1, (14, 14)).macs
    # 4x fewer pixels; a bit more than 4x because the pooled maps round down (14 -> 7 -> 3 vs 28 -> 14 -> 7)
    assert 3.5 < full / half < 6.0
    deployed = count(model.eval(), *x28).macs   # WAE encoder + backbone on I_L + light branch, no decoder
    assert half < deployed < 0.5 * full
