"""Pruning flows as functions, the layer view, and Zhu & Gupta's gradual, update-free masking."""
from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcbench.benchmarks.archs import SmallCNN
from mcbench.methods.flows import prune
from mcbench.methods.pruning._layerview import layer_views
from mcbench.methods.pruning._masks import LayerMasks, masks_from_scores
from mcbench.methods.registry import REGISTRY


def _tiny(seed=0):
    torch.manual_seed(seed)
    m = SmallCNN(1, 3, (4, 6))
    for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


# ------------------------------------------------------------------ layer view
def test_layer_view_fields_match_a_manual_forward_and_backward():
    m, batches = _tiny(), [torch.randn(5, 1, 8, 8), torch.randn(3, 1, 8, 8)]
    x = torch.cat(batches)

    def loss(logits, _x):  # no labels on calibration data: the model's own predictions
        return F.cross_entropy(logits, logits.argmax(1))

    views = layer_views(m, x[:1], batches=batches, activations=True, loss=loss)
    assert list(views) == ["stage1.0", "stage2.0", "fc"]
    v1, v2, fc = views["stage1.0"], views["stage2.0"], views["fc"]
    assert v1.weight is m.stage1[0].weight and v1.bn is m.stage1[1] and fc.bn is None
    assert torch.equal(v1.gamma, m.stage1[1].weight) and torch.equal(v1.running_var, m.stage1[1].running_var)
    assert (v1.consumer, v2.consumer, fc.consumer) == ("stage2.0", "fc", None)
    with torch.no_grad():  # manual forward
        a1 = m.stage1[0](x)
        h = m.pool1(m.stage1[2](m.stage1[1](a1)))
        a2 = m.stage2[0](h)
        feat = m.flatten(m.gap(m.stage2[2](m.stage2[1](a2))))
    torch.testing.assert_close(v1.inputs, x)
    torch.testing.assert_close(v1.outputs, a1)
    torch.testing.assert_close(v2.inputs, h)
    torch.testing.assert_close(v2.outputs, a2)
    torch.testing.assert_close(fc.inputs, feat)
    torch.testing.assert_close(fc.outputs, m.fc(feat))
    m.zero_grad()  # manual gradient, summed over the batches
    for b in batches:
        logits = m(b)
        F.cross_entropy(logits, logits.argmax(1)).backward()
    torch.testing.assert_close(v2.grad, m.stage2[0].weight.grad)
    torch.testing.assert_close(fc.grad, m.fc.weight.grad)


def test_layer_view_grad_is_current_grad_without_loss():
    m = _tiny()
    assert layer_views(m, torch.randn(1, 1, 8, 8))["fc"].grad is None
    m(torch.randn(2, 1, 8, 8)).sum().backward()
    assert torch.equal(layer_views(m, torch.randn(1, 1, 8, 8))["fc"].grad, m.fc.weight.grad)
    with pytest.raises(ValueError, match="not Conv2d/Linear"):
        layer_views(m, torch.randn(1, 1, 8, 8), names=["stage1.1"])


def test_masks_per_layer_and_global():
    scores = {"a": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([[10.0, 20.0], [30.0, 40.0]])}
    shapes = {n: s.shape for n, s in scores.items()}
    per_layer = masks_from_scores(scores, shapes, 0.5)
    assert per_layer["a"].sum() == 2 and per_layer["b"].sum() == 2
    glob = masks_from_scores(scores, shapes, 0.5, scope="global")
    assert not glob["a"].any() and glob["b"].all()  # one threshold: every weight of 'a' ranks lower
    rows = masks_from_scores(scores, shapes, 0.5, structured=True)
    assert rows["a"].tolist() == [[False, False], [True, True]]
    with pytest.raises(ValueError, match="scope"):
        masks_from_scores(scores, shapes, 0.5, scope="net")


def test_criterion_sees_bn_of_the_layer():
    """A BN-scale criterion (network slimming style) written against the view, not the weight."""
    m = _tiny()
    masks = LayerMasks(m, criterion=lambda v: v.gamma.abs(), structured=True, only={"stage1.0", "stage2.0"})
    masks.update(0.5)
    keep = prune.channel_keep(masks.masks)["stage1.0"]
    gamma = m.stage1[1].weight.detach().abs()
    assert set(keep.nonzero().flatten().tolist()) == set(torch.topk(gamma, 2).indices.tolist())


def test_masked_and_physically_pruned_models_agree():
    m, x = _tiny(), torch.randn(6, 1, 8, 8)
    from mcbench.methods.pruning._physical import find_chains

    chains = find_chains(m, x[:1])
    keep = {"stage1.0": torch.tensor([True, False, True, False]),
            "stage2.0": torch.tensor([False, True, True, True, False, True])}
    prune.mask_channels(m, keep, chains)
    small = prune.remove_channels(m, x[:1])
    assert [c.out_channels for c in small.modules() if isinstance(c, nn.Conv2d)] == [2, 4]
    torch.testing.assert_close(small(x), m(x), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ Zhu & Gupta: gradual, masked weights frozen
@contextlib.contextmanager
def _watch_optimizer():
    """Records, around every optimiser step of any optimiser: the fraction of exactly-zero weights of
    conv/linear layers before the step, and every weight that was exactly 0 before but not after it."""
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    log = {"sparsity": [], "revived": 0, "moved": 0, "state_nonzero": 0}
    before = {}

    def weights(opt):
        return [p for g in opt.param_groups for p in g["params"] if p.dim() > 1]

    def pre(opt, *_):
        ws = weights(opt)
        zeros = [(p == 0) for p in ws]
        log["sparsity"].append(sum(int(z.sum()) for z in zeros) / sum(p.numel() for p in ws))
        before.clear()
        before.update({p: (z, p.detach().clone()) for p, z in zip(ws, zeros)})

    def post(opt, *_):
        for p, (z, old) in before.items():
            log["revived"] += int((p[z] != 0).sum())
            log["moved"] += int((p[~z] != old[~z]).sum())
            st = opt.state.get(p, {})
            if "exp_avg" in st and z.any() and len(log["sparsity"]) > 1:
                log["state_nonzero"] += int((st["exp_avg"][z] != 0).sum())

    handles = [register_optimizer_step_pre_hook(pre), register_optimizer_step_post_hook(post)]
    try:
        yield log
    finally:
        for h in handles:
            h.remove()


def _assert_gradual(traj, s_i, s_f, end_fraction):
    n = len(traj)
    assert all(b >= a - 1e-12 for a, b in zip(traj, traj[1:])), "sparsity must never decrease"
    assert traj[0] <= s_i + 0.01, f"starts at {traj[0]:.3f}, not near s_i={s_i}"
    assert abs(max(traj) - s_f) < 0.01, f"never reaches s_f={s_f} (max {max(traj):.3f})"
    first_final = next(i for i, s in enumerate(traj) if s >= max(traj) - 1e-9)  # start of the final plateau
    assert first_final >= int(0.9 * end_fraction * n), f"s_f reached at step {first_final} of {n}: not gradual"
    mid = traj[int(0.4 * end_fraction * n)]
    assert s_i + 0.05 < mid < s_f - 0.05, f"sparsity {mid:.3f} mid-schedule: not gradual"


@pytest.mark.slow
def test_zhu_sparsity_is_gradual_and_masked_weights_get_no_update(smoke_harness):
    ctx = smoke_harness.context(0)
    ctx.load_baseline()  # train/cache outside the watch
    cfg = dict(final_sparsity=0.8, initial_sparsity=0.0, end_fraction=0.75, frequency_steps=2,
               sparsity_control=0.0)   # one run: the watch sees one schedule
    with _watch_optimizer() as log:
        out = REGISTRY.create("zhu2017prune", **cfg).apply(ctx)
    _assert_gradual(log["sparsity"], 0.0, 0.8, 0.75)
    assert log["revived"] == 0, f"{log['revived']} masked weights were moved off 0 by the optimiser step"
    assert log["state_nonzero"] == 0, "AdamW momentum of masked weights is not cleared"
    assert log["moved"] > 1000  # the unmasked weights do train
    assert out.extra["achieved_sparsity_pruned_layers"] == pytest.approx(0.8, abs=0.01)
    assert out.storage_real and not out.compute_real and out.encoded is not None   # the sparse file, dense kernels
    assert out.extra["size_bytes_sparse_file"] < 0.5 * 4 * sum(p.numel() for p in out.model.parameters())


@pytest.mark.slow
def test_gradual_check_rejects_a_one_shot_pruner(smoke_harness):
    ctx = smoke_harness.context(0)
    model = ctx.load_baseline()
    with _watch_optimizer() as log:
        prune.prune_while_finetuning(ctx, model, lambda v: v.weight.abs(), prune.Schedule(lambda s, t: 0.8))
    with pytest.raises(AssertionError, match="not gradual|not near"):
        _assert_gradual(log["sparsity"], 0.0, 0.8, 0.75)
