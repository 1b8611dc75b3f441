"""SLQ / MLQ (Xu et al. 2018): power-of-two levels, loss-based cluster partition, frozen quantized weights."""
from __future__ import annotations

import pytest
import torch

from mcbench.methods.flows import quantize
from mcbench.methods.quantization import xu2018deep as X
from mcbench.methods.registry import REGISTRY


def test_registered():
    assert REGISTRY.get("xu2018deep").family == "quantization"


def test_levels_by_hand():
    w = torch.tensor([0.9, -0.3, 0.01])
    # s = 0.9: n1 = floor(log2(1.2)) = 0; 4 bits: n2 = 0 + 1 - 4 = -3
    assert X.levels(w, 4).tolist() == [-1.0, -0.5, -0.25, -0.125, 0.0, 0.125, 0.25, 0.5, 1.0]
    assert X.levels(w, 2).tolist() == [-1.0, 0.0, 1.0]                       # ternary


def test_ternary_levels_of_a_small_layer():
    # s = 0.2: 4s/3 = 0.267, log2 = -1.91, floor -> -2: ternary {0, +-1/4}
    assert X.levels(torch.tensor([0.2, -0.1]), 2).tolist() == [-0.25, 0.0, 0.25]


def test_partition_quantizes_the_lowest_loss_cluster_first():
    book = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
    tight = torch.full((10,), 0.5) + torch.linspace(-0.01, 0.01, 10)          # near a level: low loss
    spread = torch.linspace(0.7, 0.9, 10)                                 # between levels: high loss
    w = torch.cat([tight, spread]).clone()
    frozen = X.partition_step(w, torch.zeros(20, dtype=torch.bool), book, portion=0.5, clusters=2)
    assert frozen[:10].all() and not frozen[10:].any()
    assert torch.equal(w[:10], torch.full((10,), 0.5))                      # shared quantized centre
    assert torch.equal(w[10:], torch.linspace(0.7, 0.9, 10))              # left float for re-training
    final = X.partition_step(w, frozen, book, portion=1.0, clusters=2)
    assert final.all() and set(w.tolist()) <= set(book.tolist())
    assert torch.equal(w[10:], X.nearest(torch.linspace(0.7, 0.9, 10), book))


def test_frozen_weights_do_not_move():
    layer = torch.nn.Linear(4, 2)
    mask = torch.tensor([[True, False, True, False], [False, False, True, True]])
    hook = X.Frozen()
    hook.set(layer, mask)
    before = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(1.0)
    hook(layer, 1, 1)
    assert torch.equal(layer.weight[mask], before[mask])
    assert torch.equal(layer.weight[~mask], before[~mask] + 1.0)


@pytest.mark.parametrize("mode,bits,runs", [("slq", 4, 2),
                                            pytest.param("mlq", 2, 5, marks=pytest.mark.slow)])   # five runs
def test_apply_ends_on_the_levels_after_incremental_retraining(mode, bits, runs):
    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    walk = Walk(out=None)
    ctx = _tiny_context(walk)
    baseline = ctx.load_baseline()
    out = REGISTRY.create("xu2018deep", mode=mode, bits=bits).apply(ctx)
    assert walk.trained == runs == out.extra["retraining_runs"]   # slq: 3 steps; mlq: 2 groups x 3 steps, minus the last
    for (name, m), (_, b) in zip(X.U.quant_layers(out.model), X.U.quant_layers(baseline)):
        book = X.levels(b.weight, bits)
        assert set(m.weight.detach().unique().tolist()) <= set(book.tolist()), name
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(out.encoded.decode(out.encoded.encode(out.model))(x), out.model(x))


def test_row_validation_score_is_of_the_fully_quantized_model():
    """The last step quantizes without re-training after it: the report's validation top-1 is measured then."""
    import dataclasses

    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    ctx = _tiny_context(Walk(out=None))
    baseline = ctx.load_baseline()
    books = [X.levels(b.weight, 4) for _, b in X.U.quant_layers(baseline)]
    seen = []

    def evaluate(model):
        seen.append(all(set(m.weight.detach().unique().tolist()) <= set(book.tolist())
                        for (_, m), book in zip(X.U.quant_layers(model), books)))
        return 12.5

    out = REGISTRY.create("xu2018deep", mode="slq", bits=4).apply(dataclasses.replace(ctx, evaluate=evaluate))
    assert out.train_report.val_top1_acc_pct == 12.5 and seen == [True]


def test_bn_reestimation_by_hand():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU())
    batches = [torch.randn(4, 1, 6, 6) + i for i in range(3)]
    w = model[0].weight.detach().clone()
    quantize.reestimate_bn(model, batches, torch.device("cpu"))
    with torch.no_grad():
        pre = [model[0](b) for b in batches]
    mean = torch.stack([p.mean(dim=(0, 2, 3)) for p in pre]).mean(0)            # equal batches: average of means
    var = torch.stack([p.var(dim=(0, 2, 3), unbiased=True) for p in pre]).mean(0)
    assert torch.allclose(model[1].running_mean, mean, atol=1e-5)
    assert torch.allclose(model[1].running_var, var, atol=1e-4)
    assert torch.equal(model[0].weight, w) and not model.training and model[1].momentum == 0.1


def test_apply_reestimates_bn_on_the_fully_quantized_model():
    """After the last step (no re-training after it) the BN statistics are the quantized model's."""
    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    ctx = _tiny_context(Walk(out=None))
    out = REGISTRY.create("xu2018deep", mode="slq", bits=4, bn_batches=3).apply(ctx)
    conv, bn = out.model.stage1[0], out.model.stage1[1]
    with torch.no_grad():
        mean = torch.stack([conv(b).mean(dim=(0, 2, 3)) for b in ctx.calibration_batches(3)]).mean(0)
    assert torch.allclose(bn.running_mean, mean, atol=1e-5)
    torch.manual_seed(0)
    stale = REGISTRY.create("xu2018deep", mode="slq", bits=4, bn_batches=0).apply(_tiny_context(Walk(out=None)))
    assert torch.equal(stale.model.stage1[0].weight, conv.weight)           # the same run up to the last step
    assert not torch.allclose(stale.model.stage1[1].running_mean, mean, atol=1e-3)
