"""Pilots mittal2018recovering (random vs L1 channel criteria, a control row) and he2017channel
(LASSO channel selection with least-squares reconstruction)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mcbench.benchmarks import measure
from mcbench.benchmarks.archs import SmallCNN
from mcbench.methods.flows import prune
from mcbench.methods.protocols import MethodContext
from mcbench.methods.pruning._layerview import layer_views
from mcbench.methods.pruning._physical import find_chains
from mcbench.methods.pruning.he2017channel import (channel_pruning, flat_weight, patches, reconstruct,
                                                    reconstruction_error, sample_positions, select_channels)
from mcbench.methods.pruning.mittal2018recovering import l1_filter_norm, random_criterion


def _model(seed=0, widths=(8, 12)):
    torch.manual_seed(seed)
    m = SmallCNN(1, 3, widths)
    for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def _ctx(model, seed=0, n=4):
    g = torch.Generator().manual_seed(123)
    batches = [torch.randn(16, 1, 8, 8, generator=g) for _ in range(n)]
    return MethodContext(num_classes=3, in_chans=1, input_size=(8, 8), epochs_scratch=0, epochs_finetune=0,
                         train_fn=None, build_student=None, build_baseline=None, load_baseline=lambda: model,
                         load_teacher=None, calibration_batches=lambda: batches, seed=seed)


def _kept(model, criterion, ratio=0.5):
    views = layer_views(model, torch.randn(1, 1, 8, 8), names=["stage1.0", "stage2.0"])
    shapes = {n: v.weight.shape for n, v in views.items()}
    masks = prune.masks_from_scores({n: criterion(v) for n, v in views.items()}, shapes, ratio, structured=True)
    return {n: set(k.nonzero().flatten().tolist()) for n, k in prune.channel_keep(masks).items()}


# ------------------------------------------------------------------ Mittal et al. 2018
def test_random_and_l1_reach_the_same_channel_count_with_different_channels():
    m = _model()
    rand, l1 = _kept(m, random_criterion(0)), _kept(m, l1_filter_norm)
    assert {n: len(k) for n, k in rand.items()} == {n: len(k) for n, k in l1.items()} == {"stage1.0": 4, "stage2.0": 6}
    assert rand != l1  # random selection is not the magnitude ranking in disguise
    norms = m.stage2[0].weight.detach().abs().flatten(1).sum(1)
    assert l1["stage2.0"] == set(torch.topk(norms, 6).indices.tolist())
    assert _kept(m, random_criterion(0)) == rand and _kept(m, random_criterion(1)) != rand  # seeded


@pytest.mark.parametrize("criterion", [random_criterion(3), l1_filter_norm], ids=["random", "l1"])
def test_one_shot_removal_equals_the_masked_model(criterion):
    m, x = _model(), torch.randn(6, 1, 8, 8)
    ctx = _ctx(m)
    chains = find_chains(m, x[:1])
    masked = _model()
    views = layer_views(masked, x[:1], names=list(chains))
    masks = prune.masks_from_scores({n: criterion(v) for n, v in views.items()},
                                    {n: v.weight.shape for n, v in views.items()}, 0.5, structured=True)
    prune.mask_channels(masked, prune.channel_keep(masks), chains)
    small = prune.prune_channels_once(ctx, m, criterion, 0.5)
    assert [c.out_channels for c in small.modules() if isinstance(c, nn.Conv2d)] == [4, 6]
    assert small.fc.in_features == 6
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-6)
    assert measure.count_params(small)[0] < measure.count_params(masked)[0] / 2


@pytest.mark.slow
def test_mittal_rows_link_the_l1_control_to_the_random_row(smoke_harness, tmp_path):
    from mcbench.benchmarks.leaderboard import aggregate
    from mcbench.benchmarks.runner import plan
    from mcbench.benchmarks.store import ResultStore

    h = smoke_harness
    spec = [s for s in plan(h.cfg, h.task, h.dataset_label) if s.method == "mittal2018recovering"]
    if not spec:  # the method list of the fixture's config is fixed at import: build the spec directly
        from dataclasses import replace
        spec = plan(replace(h.cfg, methods=["mittal2018recovering"]), h.task, h.dataset_label)
    rows = h.run_with_controls(spec[0])
    parent = rows[-1]
    by_kind = {r.control_kind: r for r in rows[:-1]}
    assert set(by_kind) == {"l1", "ratio70"}
    ctrl, level = by_kind["l1"], by_kind["ratio70"]
    assert (parent.method, parent.control_of, parent.control_kind) == ("mittal2018recovering", "", "")
    assert (ctrl.method, ctrl.control_of, ctrl.control_kind) == ("mittal2018recovering:l1", parent.run_id, "l1")
    assert ctrl.run_id != parent.run_id and ctrl.family == parent.family == "pruning"
    assert ctrl.macs == parent.macs and ctrl.params_count == parent.params_count  # same ratio, same shapes
    assert parent.compression_real and parent.macs_ratio_vs_baseline > 2
    # the curve: the parent and its level control carry the same knob; the l1 control is not a level
    lv = {r.control_kind: json.loads(r.extra_json) for r in rows}
    assert (lv[""]["level_knob"], lv[""]["level_value"]) == ("channel_ratio", 0.5)
    assert (lv["ratio70"]["level_knob"], lv["ratio70"]["level_value"]) == ("channel_ratio", 0.7)
    assert "level_knob" not in lv["l1"]
    assert level.control_of == parent.run_id and level.macs < parent.macs
    with ResultStore(tmp_path / "r.sqlite") as store:
        for r in rows:
            store.insert(r)
        agg = aggregate(store.dataframe())
    assert sorted(agg["method"]) == ["mittal2018recovering", "mittal2018recovering:l1", "mittal2018recovering:ratio70"]
    assert (agg["n_seeds"] == 1).all()
    assert agg.set_index("method").loc["mittal2018recovering:l1", "control_kind"] == "l1"


# ------------------------------------------------------------------ He et al. 2017
def _he_example(seed=0):
    m, ctx = _model(seed, widths=(8, 12)), None
    ctx = _ctx(m)
    v = layer_views(m, torch.randn(1, 1, 8, 8), names=["stage2.0"], batches=ctx.calibration_batches(),
                    activations=True)["stage2.0"]
    pos = sample_positions(v.inputs, v.module, 10, torch.Generator().manual_seed(0))
    x = patches(v.inputs, v.module, pos)
    w = flat_weight(v.module)
    y = x.reshape(len(x), -1) @ w.reshape(w.shape[0], -1).T
    return m, x, w, y


def test_patches_reproduce_the_consumer_output():
    m, x, w, y = _he_example()
    v = layer_views(m, torch.randn(1, 1, 8, 8), names=["stage2.0"], batches=_ctx(m).calibration_batches(),
                    activations=True)["stage2.0"]
    pos = sample_positions(v.inputs, v.module, 10, torch.Generator().manual_seed(0))
    out = v.outputs.flatten(2)  # (B, n, H*W); the conv has no bias
    picked = out.gather(2, pos.unsqueeze(1).expand(-1, out.shape[1], -1)).permute(0, 2, 1).reshape(-1, out.shape[1])
    torch.testing.assert_close(y, picked, rtol=1e-4, atol=1e-5)
    assert reconstruction_error(x, w, y) < 1e-10
    assert reconstruction_error(x, reconstruct(x, y, torch.arange(8)), y) < 1e-8  # all channels kept: exact


def test_lasso_selection_reconstructs_better_than_random_selection():
    _, x, w, y = _he_example()
    kept = select_channels(x, w, y, 4)
    assert len(kept) == 4 and len(set(kept.tolist())) == 4
    ours = reconstruction_error(x[:, kept], reconstruct(x, y, kept), y)
    g = torch.Generator().manual_seed(0)
    randoms = [reconstruction_error(x[:, r], reconstruct(x, y, r), y)
               for r in (torch.randperm(8, generator=g)[:4].sort().values for _ in range(20))]
    assert ours < sum(randoms) / len(randoms), (ours, randoms)
    assert ours < min(randoms)  # on this fixed example, better than each of 20 random choices
    assert ours < reconstruction_error(x[:, kept], w[:, kept], y)  # keeping W without step (ii) is worse


def test_he_channel_pruning_is_physical_and_keeps_the_output_shape():
    m = _model(widths=(8, 12))
    ctx = _ctx(m)
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        full = m(x)
    small = channel_pruning(ctx, _model(widths=(8, 12)), 0.5)
    assert [c.out_channels for c in small.modules() if isinstance(c, nn.Conv2d)] == [4, 6]
    with torch.no_grad():
        out = small(x)
    assert out.shape == full.shape and torch.isfinite(out).all()
    macs = [measure.macs_from_flops(measure.count_flops(mm, x[:1])) for mm in (m, small)]
    assert macs[0] / macs[1] > 2.5
    assert measure.serialized_bytes(small)[0] < measure.serialized_bytes(m)[0]


# ------------------------------------------------------------------ the paper settings' architecture
def test_vgg16_cifar_layout_matches_the_known_size_and_every_conv_is_removable():
    from mcbench.benchmarks.archs import ArchSpec, build

    v16 = (64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0)
    m = build(ArchSpec("vgg", v16), 3, 10, (32, 32)).eval()
    x = torch.randn(1, 3, 32, 32)
    assert sum(isinstance(c, nn.Conv2d) for c in m.modules()) == 13
    assert measure.count_params(m)[0] == 14_724_042          # 13 convs + BN + a 512x10 classifier
    assert measure.macs_from_flops(measure.count_flops(m, x)) == 313_201_664  # the usual ~313M of VGG-16 on CIFAR
    assert len(find_chains(m, x)) == 13
    small = build(ArchSpec("vgg", v16), 1, 10, (28, 28)).eval()  # substitute input: a pool below 1x1 is left out
    assert small(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="at least one conv"):
        build(ArchSpec("vgg", (0, 0)), 3, 10, (32, 32))
