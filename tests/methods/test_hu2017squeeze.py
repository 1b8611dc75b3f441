"""hu2017squeeze: SE blocks rescale channels; SE-ResNet-50's size; the task network with SE trains."""
from __future__ import annotations

import torch
from torch import nn

from compact_checks import forward_and_one_step, paper_count
from mcbench.methods.compact.hu2017squeeze import SEBlock, add_se_blocks
from mcbench.methods.registry import REGISTRY

KEY = "hu2017squeeze"


def test_se_block_rescales_each_channel_by_one_factor_in_0_1():
    """Eq. 4: the output is the input times s_c, one factor per (sample, channel), 0 < s_c < 1."""
    torch.manual_seed(0)
    se = SEBlock(32, 16)
    x = torch.rand(4, 32, 6, 6) + 0.1
    ratio = se(x) / x
    per_channel = ratio[:, :, :1, :1]
    assert torch.allclose(ratio, per_channel.expand_as(ratio), atol=1e-6)  # constant over H x W
    assert (per_channel > 0).all() and (per_channel < 1).all()
    assert torch.allclose(per_channel.flatten(1), se.excitation(x), atol=1e-6)


def test_excitation_depends_on_the_squeezed_global_mean_only():
    """Eq. 2: two inputs with the same channel means get the same weights."""
    torch.manual_seed(0)
    se = SEBlock(16, 4)
    x = torch.randn(1, 16, 5, 5)
    shuffled = x.flatten(2)[:, :, torch.randperm(25)].reshape_as(x)  # same per-channel means
    assert torch.allclose(se.excitation(x), se.excitation(shuffled), atol=1e-6)


def test_se_resnet50_has_section_4s_cost():
    """Section 4: ~3.87 GFLOPs (mult-adds) and ~2.5M parameters beyond ResNet-50's ~25M (~10%)."""
    se = paper_count(KEY, {"network": "legacy_seresnet50"}, (3, 224, 224))
    assert abs(se.macs - 3.87e9) / 3.87e9 < 0.01
    with torch.device("meta"):
        import timm
        plain = sum(p.numel() for p in timm.create_model("resnet50", pretrained=False).parameters())
    assert 2.3e6 < se.params_count - plain < 2.7e6


def test_task_network_gets_one_se_block_per_stage(smoke_harness):
    ctx = smoke_harness.context(0)
    base = ctx.build_baseline()
    model = REGISTRY.create(KEY).build(ctx)
    blocks = [m for m in model.modules() if isinstance(m, SEBlock)]
    assert len(blocks) == 3 and [b.fc2.out_features for b in blocks] == [32, 64, 128]
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in base.parameters())
    assert extra == sum(2 * c * (c // 16) + c // 16 + c for c in (32, 64, 128))
    forward_and_one_step(model, 1, (8, 8), 10)


def test_add_se_refuses_a_network_without_stages():
    import pytest

    with pytest.raises(ValueError, match="stage"):
        add_se_blocks(nn.Sequential(nn.Conv2d(1, 4, 3)), 16)
