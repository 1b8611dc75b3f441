"""gupta2015cross: a paired Sobel modality, feature regression on unlabelled pairs, then a labelled share."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mcbench.methods.distillation.gupta2015cross import SobelModality, transfer_loss
from mcbench.methods.registry import REGISTRY

KEY = "gupta2015cross"


def test_sobel_modality_matches_hand_computation_and_drops_brightness():
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, :, 2] = 1.0                       # a vertical edge: at the centre gx = 1 + 2 + 1 = 4, gy = 0
    m = SobelModality(out_chans=2)
    out = m(x)
    assert out.shape == (1, 2, 3, 3) and torch.equal(out[:, 0], out[:, 1])
    assert out[0, 0, 1, 1].item() == pytest.approx(1.0, abs=1e-5)       # |(4, 0)| / 4
    flat = torch.full((1, 1, 5, 5), 0.7)
    assert m(flat)[0, 0, 1:-1, 1:-1].abs().max().item() < 1e-5           # no edges: brightness is gone


def test_transfer_loss_is_the_summed_squared_gap_after_the_adapter():
    adapter = nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        adapter.weight.copy_(torch.tensor([[[[2.0]]], [[[-1.0]]]]))
    s = torch.tensor([[[[1.0]]], [[[0.5]]]])            # (2 images, 1 channel, 1x1)
    t = torch.tensor([[[[1.0]], [[0.0]]], [[[1.0]], [[0.0]]]])
    # image 1: adapted (2, -1) vs (1, 0): 1 + 1 = 2; image 2: (1, -0.5) vs (1, 0): 0.25; mean 1.125
    assert transfer_loss(s, t, adapter).item() == pytest.approx(1.125)


@pytest.mark.slow
def test_method_on_digits_regresses_features_then_uses_the_labelled_share(smoke_harness):
    method = REGISTRY.create(KEY, labelled_share=100, share_passes_per_budget_epoch=1)
    ctx = smoke_harness.context(0, method)
    out = method.apply(ctx)
    assert out.extra["labelled_images"] == 100 and set(out.controls) == {"share-only"}
    assert isinstance(out.model[0], SobelModality)
    assert [e.stage for e in ctx.ledger.entries if not e.upstream][:2] == ["supervision_transfer", "finetune_share"]
