"""chen2015net2net: Net2WiderNet and Net2DeeperNet leave the network's function unchanged (BN included)."""
from __future__ import annotations

import copy

import pytest
import torch

from mcbench.benchmarks.archs import ArchSpec, build
from mcbench.methods.distillation.chen2015net2net import deepen_stage, random_mapping, stage_widths, widen_stage
from mcbench.methods.registry import REGISTRY

KEY = "chen2015net2net"


def _trained_like_cnn(seed: int = 0):
    """A task CNN with non-trivial BN statistics (a few train-mode passes), in eval mode."""
    torch.manual_seed(seed)
    model = build(ArchSpec("cnn", (4, 6, 8)), 1, 5, (8, 8))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        model.train()
        for _ in range(5):
            model(torch.rand(32, 1, 8, 8) * 2)
    return model.eval()


def test_mapping_keeps_old_units_and_draws_new_ones_from_them():
    g = random_mapping(4, 9, torch.Generator().manual_seed(0))
    assert g[:4].tolist() == [0, 1, 2, 3] and len(g) == 9 and int(g.max()) < 4
    with pytest.raises(ValueError):
        random_mapping(4, 3)


def test_wider_net_computes_the_same_function():
    model = _trained_like_cnn()
    x = torch.rand(16, 1, 8, 8)
    before = model(x)
    wide = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(1)
    for k, width in enumerate((9, 13, 20), start=1):
        widen_stage(wide, k, width, generator=gen)
    assert stage_widths(wide) == [9, 13, 20]
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in model.parameters())
    assert torch.allclose(wide.eval()(x), before, atol=1e-5)


def test_wider_net_without_the_division_would_change_the_function():
    """The defining rescaling U^(i+1) = W^(i+1)/|g^-1|: undoing it changes the outputs (the test can fail)."""
    model = _trained_like_cnn()
    x = torch.rand(16, 1, 8, 8)
    wide = copy.deepcopy(model)
    g = widen_stage(wide, 3, 20, generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(g, minlength=8).float()
    with torch.no_grad():
        wide.fc.weight.mul_(counts[g].view(1, -1))
    assert not torch.allclose(wide(x), model(x), atol=1e-3)


def test_deeper_net_computes_the_same_function_with_bn():
    model = _trained_like_cnn()
    x = torch.rand(16, 1, 8, 8)
    before = model(x)
    deep = copy.deepcopy(model)
    for k in (1, 2, 3):
        deepen_stage(deep, k, [torch.rand(32, 1, 8, 8)])
    assert sum(isinstance(m, torch.nn.Conv2d) for m in deep.modules()) == 6
    assert torch.allclose(deep.eval()(x), before, atol=1e-5)
    widen_stage(deep, 2, 10, generator=torch.Generator().manual_seed(2))   # widening a deepened stage
    assert torch.allclose(deep.eval()(x), before, atol=1e-5)


def test_noise_breaks_exact_replication():
    model = _trained_like_cnn()
    wide = copy.deepcopy(model)
    g = widen_stage(wide, 1, 9, noise_std=0.1, generator=torch.Generator().manual_seed(3))
    w = wide.stage1[0].weight
    assert not torch.equal(w[4], w[int(g[4])])


@pytest.mark.slow
def test_student_grows_to_the_baseline_and_trains(smoke_harness):
    method = REGISTRY.create(KEY, noise_std=0.0)
    torch.manual_seed(0)
    out = method.apply(smoke_harness.context(0, method))
    assert out.extra["widths_before"] == [16, 32, 64] and out.extra["widths_after"] == [32, 64, 128]
    assert out.extra["val_top1_grown_before_training_pct"] == pytest.approx(out.extra["val_top1_student_pct"])
    assert out.model.state_dict().keys() == smoke_harness.build("baseline").state_dict().keys()
