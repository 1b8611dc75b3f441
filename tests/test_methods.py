"""Every registered method, on digits with the smoke budget, plus each first method's defining property."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcbench.benchmarks import measure
from mcbench.benchmarks.train import accuracy_pct
from mcbench.methods.protocols import ModelOutput
from mcbench.methods.registry import REGISTRY


# Cheaper configs for the walk only, where a default sized for Fashion-MNIST costs many times a
# typical method on the 1,197-image digits split (the defaults run on the leaderboard; each
# paper's own test covers its defining property). Same code paths, smaller counts.
WALK_OVERRIDES: dict[str, dict] = {
    "nayak2019zero": {"num_impressions": 128, "kd_epochs_per_budget_epoch": 4},
    "bucilua2006model": {"ensemble_seeds": [0, 1], "munge_source": 300, "rounds": 1},
    "papamakarios2015distilling": {"ensemble_seeds": [0, 1], "transfer_size": 200, "passes_per_budget_epoch": 2},
    "gupta2015cross": {"labelled_share": 200, "share_passes_per_budget_epoch": 1},
    "ashok2017n2n": {"removal_iterations": 1, "removal_rollouts": 2, "shrink_iterations": 1, "shrink_rollouts": 2},
}


def _walk_keys() -> list:
    """Every registered key; the extended tier's (methods too costly for the main job, each with its reason in
    its catalog record) run in the slow tier here, about 3 of the suite's minutes. Their defining properties
    are in their own tests (tests/methods/), and the slow tier's claims walk (test_registry_methods.py) and
    `mcbench run --tier extended` apply them all."""
    from mcbench.benchmarks.runner import extended_tier

    extended = extended_tier()
    return [pytest.param(k, marks=pytest.mark.slow) if k in extended else k for k in REGISTRY.keys()]


WALK_KEYS = _walk_keys()


def apply_for_walk(harness, key: str):
    """``key`` applied with the walk's config in ``harness``'s seed-0 context, from a fixed random state."""
    torch.manual_seed(0)
    return REGISTRY.create(key, **WALK_OVERRIDES.get(key, {})).apply(harness.context(seed=0))


@pytest.fixture(scope="module")
def applied(smoke_harness):
    """Apply every registered method once (module scope: each is trained once)."""
    out = {}

    def get(key):
        if key not in out:
            out[key] = apply_for_walk(smoke_harness, key)
        return out[key]

    return get


@pytest.mark.parametrize("key", WALK_KEYS)
def test_method_applies_and_keeps_shape(key, applied, smoke_harness, digits):
    c = applied(key)
    x = digits.x_test[:16]
    with torch.no_grad():
        y = c.model(x)
    assert y.shape == (16, digits.num_classes)
    assert torch.isfinite(y).all()
    assert isinstance(c.real, bool) and c.note
    post_training = bool(c.quant_engine) and c.train_report is None   # calibrated int8: nothing to train
    assert post_training or (c.train_report is not None and c.train_report.epochs_run > 0)
    assert 0 < c.bits_per_weight <= 32


@pytest.mark.parametrize("key", WALK_KEYS)
def test_encoded_format_round_trips_exactly(key, applied):
    c = applied(key)
    if c.encoded is None:
        pytest.skip(f"{key} stores no encoded format (its storage is torch.save of the deployed model)")
    decoded = c.encoded.decode(c.encoded.encode(c.model))
    want, got = c.model.state_dict(), decoded.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k].cpu(), got[k]), k
    assert c.storage_real is True  # an encoded file is measured by the harness


@pytest.mark.parametrize("key", WALK_KEYS)
def test_reported_validation_score_is_the_returned_models(key, applied, digits):
    """A row's validation score must be of the model the row scores on test. A method that transforms the
    model after its last training call (weight sharing, a final projection, int8 conversion, surgery) and
    keeps the training's score shows a number that is not what it says (Deep k-Means, LC quantization and
    SLQ did, until each re-evaluated after its last step)."""
    c = applied(key)
    if c.train_report is None:
        pytest.skip(f"{key} reports no training: the harness scores validation on the returned model itself")
    assert c.train_report.val_top1_acc_pct == pytest.approx(accuracy_pct(c.model, digits.x_val, digits.y_val),
                                                            abs=1e-9)


# ------------------------------------------------------------------ Hinton et al. 2015
def test_kd_loss_equals_hand_computed_value():
    from mcbench.methods.distillation.hinton2015distilling import kd_loss

    zs = torch.tensor([[1.0, 2.0, 0.5]])
    zt = torch.tensor([[2.0, 1.0, 0.0]])
    y = torch.tensor([1])
    t, a = 2.0, 0.3
    ps = [math.exp(v / t) for v in (1.0, 2.0, 0.5)]
    pt = [math.exp(v / t) for v in (2.0, 1.0, 0.0)]
    ps = [p / sum(ps) for p in ps]
    pt = [p / sum(pt) for p in pt]
    kl = sum(q * math.log(q / p) for q, p in zip(pt, ps))
    ce = -math.log(math.exp(2.0) / sum(math.exp(v) for v in (1.0, 2.0, 0.5)))
    expected = a * ce + (1 - a) * t * t * kl
    assert kd_loss(zs, zt, y, t, a).item() == pytest.approx(expected, rel=1e-6)


def test_kd_soft_term_vanishes_when_student_matches_teacher():
    from mcbench.methods.distillation.hinton2015distilling import kd_loss

    z = torch.randn(8, 10)
    y = torch.randint(0, 10, (8,))
    assert kd_loss(z, z, y, 4.0, 0.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(z, z, y, 4.0, 1.0).item() == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-6)


def test_kd_requires_teacher():
    m = REGISTRY.create("hinton2015distilling")
    with pytest.raises(ValueError, match="teacher"):
        m.loss(ModelOutput(torch.randn(2, 3)), torch.tensor([0, 1]), None)


# ------------------------------------------------------------------ Zhu & Gupta 2017
def test_cubic_schedule_values():
    m = REGISTRY.create("zhu2017prune", final_sparsity=0.9, begin_fraction=0.0, end_fraction=1.0)
    assert m.sparsity_at(0, 100) == 0.0
    assert m.sparsity_at(50, 100) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    assert m.sparsity_at(100, 100) == pytest.approx(0.9)
    vals = [m.sparsity_at(s, 100) for s in range(101)]
    assert all(b >= a for a, b in zip(vals, vals[1:]))  # monotone
    assert vals[10] - vals[0] > vals[100] - vals[90]  # prunes fast early, slowly late (cubic)


def test_pruning_hits_target_sparsity(applied):
    c = applied("zhu2017prune")
    target = REGISTRY.create("zhu2017prune").config.final_sparsity
    weights = [m.weight for m in c.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for w in weights:  # every layer is pruned to the target (floor of s * numel)
        zeros = int((w == 0).sum())
        assert zeros >= math.floor(target * w.numel())
    assert c.extra["achieved_sparsity_pruned_layers"] == pytest.approx(target, abs=0.01)
    assert c.real is False  # masks on dense kernels are simulated compression


# ------------------------------------------------------------------ Jacob et al. 2018
def test_qat_converts_to_int8_within_margin_of_fp32(smoke_harness, digits, monkeypatch):
    """The converted model is int8 throughout, scores what its fake-quantized model scored (the conversion is
    faithful) and stays near fp32 (QAT on digits at the smoke budget: on an AVX-512 CPU the fake-quantized
    model itself scored 96.7 % against fp32's 99.7 %, and its int8 conversion 96.3 %)."""
    from mcbench.methods.flows import quantize

    converted_from = []
    convert = quantize.convert_int8
    monkeypatch.setattr(quantize, "convert_int8",
                        lambda model, **kw: (converted_from.append(copy.deepcopy(model)), convert(model, **kw))[1])
    torch.manual_seed(0)
    c = REGISTRY.create("jacob2017quantization").apply(smoke_harness.context(seed=0))
    assert len(converted_from) == 1
    nnq = torch.ao.nn.quantized
    convs = [m for m in c.model.modules() if isinstance(m, nnq.Conv2d)]  # ConvReLU2d is a subclass
    linears = [m for m in c.model.modules() if isinstance(m, nnq.Linear)]
    assert len(convs) == 3 and len(linears) == 1
    assert not any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in c.model.modules())  # no float layer left
    for m in convs + linears:
        assert m.weight().dtype == torch.qint8
    assert c.real is True and c.quant_engine == "onednn" and c.bits_per_weight == 8
    fp32 = smoke_harness.trained("baseline", 0)[0]
    acc_fp32 = accuracy_pct(fp32, digits.x_test, digits.y_test)
    acc_int8 = accuracy_pct(c.model, digits.x_test, digits.y_test)
    acc_fake_quant = accuracy_pct(converted_from[0].eval(), digits.x_test, digits.y_test)
    assert abs(acc_int8 - acc_fake_quant) <= 1.0, (acc_int8, acc_fake_quant)   # 3 of 300 test images
    assert acc_int8 >= acc_fp32 - 5.0, (acc_int8, acc_fp32)  # stated margin: 5 percentage points
    disk_fp32, _ = measure.serialized_bytes(fp32)
    disk_int8, _ = measure.serialized_bytes(c.model)
    assert disk_fp32 / disk_int8 > 2.5  # weights int8 on disk: ~4x minus scales and metadata


# ------------------------------------------------------------------ Courbariaux et al. 2016
class _WeightLayerCalls(torch.overrides.TorchFunctionMode):
    """Records (input, weight) of every conv2d/linear call: what the kernel really multiplies."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (F.conv2d, torch.conv2d, F.linear):
            self.calls.append((args[0].detach().clone(), args[1].detach().clone()))
        return func(*args, **kwargs)


def test_binarized_layers_multiply_plus_minus_one_inputs(applied, digits):
    """Every binary layer but the first multiplies +/-1 activations by +/-1 weights (Sec. 2.6)."""
    from mcbench.methods.binarization.courbariaux2016binarized import deployed_model

    c = applied("courbariaux2016binarized")
    with torch.no_grad(), _WeightLayerCalls() as rec:   # the float simulation (the packed path is checked against it
        deployed_model(c.model, use_kernel=False)(digits.x_test[:8])   # in tests/methods/)
    assert len(rec.calls) == 4  # three convs and the classifier
    pm1 = lambda t: set(t.unique().tolist()) <= {-1.0, 1.0}  # noqa: E731
    for i, (x, w) in enumerate(rec.calls):
        assert pm1(w), f"layer {i}: weights are not +/-1"
        if i == 0:
            assert not pm1(x)  # the first layer sees the real image
        else:
            assert pm1(x), f"layer {i}: its input is not binarized"
    packed = [n for n, m in c.model.named_modules() if getattr(m, "runs_packed_kernel", False)]
    assert c.bits_per_weight == 1 and c.real is c.compute_real is bool(packed)
    assert c.extra["packed_kernel_layers"] == packed


def test_binarized_input_check_catches_a_layer_that_stops_binarizing(applied, digits):
    from mcbench.methods.binarization.courbariaux2016binarized import BinaryConv2d

    from mcbench.methods.binarization.courbariaux2016binarized import deployed_model

    model = deployed_model(applied("courbariaux2016binarized").model, use_kernel=False)
    [m for m in model.modules() if isinstance(m, BinaryConv2d)][1].binarize_input = False
    with torch.no_grad(), _WeightLayerCalls() as rec:
        model(digits.x_test[:8])
    assert not set(rec.calls[1][0].unique().tolist()) <= {-1.0, 1.0}


def test_sign_ste_gradient_is_clipped_identity():
    from mcbench.methods.binarization.courbariaux2016binarized import binarize

    x = torch.tensor([-2.0, -0.5, 0.0, 0.7, 1.5], requires_grad=True)
    binarize(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert binarize(torch.tensor([0.0])).item() == 1.0


# ------------------------------------------------------------------ Sandler et al. 2018
def test_mobilenetv2_is_inverted_residual_and_untrained_offline(smoke_harness):
    from timm.models._efficientnet_blocks import InvertedResidual

    m = REGISTRY.create("sandler2018mobilenetv2").build(smoke_harness.context(0))
    blocks = [b for b in m.modules() if isinstance(b, InvertedResidual)]
    assert len(blocks) >= 16  # Table 2: 17 bottleneck blocks after the first
    assert m.conv_stem.stride == (2, 2)
    assert m.conv_stem.in_channels == 1 and m.classifier.out_features == 10


# ------------------------------------------------------------------ QAT observers (Jacob et al., Sec. 3.2)
def _observer_state(model):
    from mcbench.methods.flows.quantize import observers

    return [(fq.scale.clone(), fq.zero_point.clone(), int(fq.observer_enabled[0])) for fq in observers(model)]


def _same(a, b):
    return all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_qat_validation_pass_does_not_move_observers(smoke_harness, digits):
    ctx = smoke_harness.context(seed=0)
    m = REGISTRY.create("jacob2017quantization")
    prepared = m.prepare(ctx.load_baseline(), ctx)
    prepared.train()
    prepared(digits.x_train[:64])  # observers live and seeded by a training batch
    before = _observer_state(prepared)
    accuracy_pct(prepared, digits.x_val * 3.0, digits.y_val)  # the harness's validation pass (eval mode)
    assert _same(before, _observer_state(prepared)), "a validation pass changed a scale or zero point"
    assert all(e == 1 for *_, e in _observer_state(prepared))  # still observing training data afterwards
    prepared.train()
    prepared(digits.x_train[:64] * 3.0)
    assert not _same(before, _observer_state(prepared))  # training batches are observed


def test_qat_observers_frozen_after_freeze_step(smoke_harness):
    ctx = smoke_harness.context(seed=0)
    m = REGISTRY.create("jacob2017quantization", freeze_fraction=0.5)
    prepared = m.prepare(ctx.load_baseline(), ctx)
    schedule = m.hooks(ctx).after_step
    states = {}

    def after_step(model, step, total):
        schedule(model, step, total)
        states[step] = (_observer_state(model), total)

    from mcbench.methods.protocols import TrainHooks
    ctx.train_fn(prepared, epochs=ctx.epochs_finetune, hooks=TrainHooks(after_step=after_step))
    total = next(iter(states.values()))[1]
    freeze = math.ceil(0.5 * total)
    assert all(e == 1 for *_, e in states[freeze - 1][0])  # observing before the freeze step
    assert not _same(states[1][0], states[freeze - 1][0])  # ... and the scales moved while observing
    frozen = states[freeze][0]
    assert all(e == 0 for *_, e in frozen)
    for step in range(freeze, total + 1):  # validation passes and training steps in between
        assert _same(frozen, states[step][0]), f"observer moved at step {step} after the freeze"
    assert _same(frozen, _observer_state(prepared))  # the restored (selected) model as well


def test_qat_records_its_activation_range(applied):
    c = applied("jacob2017quantization")
    assert c.extra["activation_bits"] == 7 and c.extra["activation_range"] == [0, 127]
    assert "7-bit activations" in c.note


# ------------------------------------------------------------------ Han et al. 2016 (Deep Compression)
def _dc_layers(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_deep_compression_prunes_iteratively_to_the_target(applied):
    c = applied("han2015deep")
    cfg = REGISTRY.create("han2015deep").config
    layers = _dc_layers(c.model)
    for i, (name, m) in enumerate(layers):
        target = {0: cfg.sparsity_first, len(layers) - 1: cfg.sparsity_last}.get(i, cfg.sparsity)
        assert int((m.weight == 0).sum()) >= math.floor(target * m.weight.numel()), name
    rounds = c.extra["sparsity_per_round"]
    assert len(rounds) == cfg.prune_rounds and all(b > a + 0.05 for a, b in zip(rounds, rounds[1:]))
    assert rounds[0] < 0.7 * rounds[-1]  # not one-shot: the first round prunes well short of the end


def test_deep_compression_shares_at_most_2_to_the_bits_values_per_layer(applied):
    c = applied("han2015deep")
    bits = c.extra["weight_bits"]
    for name, m in _dc_layers(c.model):
        distinct = m.weight.unique()
        assert len(distinct) <= 2 ** bits[f"{name}.weight"], name  # codebook entries, zero included
        assert len(distinct) > 2  # really clustered, not collapsed


def test_deep_compression_encoded_bytes_far_below_torch_save(applied):
    c = applied("han2015deep")
    data = c.encoded.encode(c.model)
    disk, gz = measure.serialized_bytes(c.model)
    assert len(data) * 10 < disk and len(data) < gz  # beats gzip of the dense file with its zeros too
    assert c.extra["size_bytes_pruned_quantized_huffman"] <= c.extra["size_bytes_pruned_quantized_bitpacked"]
    assert c.storage_real is True and c.compute_real is False and c.real is False


def test_deep_compression_reports_sparse_ops(applied, digits):
    c = applied("han2015deep")
    ops = c.count_ops(c.model, digits.x_test[:32])
    assert ops["macs_nonzero_weights_and_inputs"] <= ops["macs_nonzero_weights"] < 0.3 * ops["macs_dense"]


def test_centroid_gradient_is_the_cluster_sum_and_weights_stay_shared():
    from mcbench.methods.pruning.han2015deep import SharedWeights

    torch.manual_seed(0)
    lin = nn.Linear(4, 3)
    assign = torch.tensor([[0, 1, 2, 1], [2, 0, 0, 1], [1, 2, 0, 0]])
    shared = SharedWeights(lin, torch.tensor([-0.5, 0.25]), assign)
    x, g = torch.randn(5, 4), torch.randn(5, 3)
    (shared(x) * g).sum().backward()
    w = shared.weight().detach().requires_grad_(True)
    (nn.functional.linear(x, w, lin.bias) * g).sum().backward()
    expected = torch.stack([w.grad[assign == k].sum() for k in (1, 2)])  # Eq. 3
    assert torch.allclose(shared.centroids.grad, expected, atol=1e-6)
    opt = torch.optim.SGD(shared.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        (shared(torch.randn(5, 4)) ** 2).sum().backward()
        opt.step()
    w = shared.unshare().weight
    assert len(w.unique()) <= 3 and (w[assign == 0] == 0).all()
    assert not torch.equal(shared.centroids.detach(), torch.tensor([-0.5, 0.25]))  # centroids did train


def test_binarized_encoded_file_packs_one_bit_per_weight_and_counts_binary_ops(applied, digits):
    c = applied("courbariaux2016binarized")
    data = c.encoded.encode(c.model)
    layers = [m for m in c.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    n_weights = sum(m.weight.numel() for m in layers)
    others = sum(p.numel() for n, p in c.model.named_parameters() if not n.endswith("weight")
                 or not any(p is m.weight for m in layers))
    buffers = sum(b.numel() * b.element_size() for b in c.model.buffers())
    assert len(data) < n_weights / 8 + 4 * others + buffers + 2048  # 1 bit per weight + float rest + header
    assert c.storage_real is True
    assert c.compute_real is any(getattr(m, "runs_packed_kernel", False) for m in c.model.modules())
    ops = c.count_ops(c.model, digits.x_test[:4])
    from mcbench.methods.ops import nonzero_macs, tally

    assert ops["additions"] == tally(layers[0], digits.x_test[:4], nonzero_macs)["macs_dense"]  # first layer only
    assert ops["xnor_popcount_macs"] > 10 * ops["additions"] > 0


def test_deep_compression_paper_setting_matches_method_and_record():
    import yaml
    from pathlib import Path

    from mcbench.benchmarks import archs
    from mcbench.catalog import load_catalog

    path = Path(__file__).resolve().parents[1] / "catalog" / "settings" / "han2015deep.yaml"
    s = yaml.safe_load(path.read_text())
    assert s["schema_version"] == 1 and s["key"] == "han2015deep" and s["task"] == "mnist"
    REGISTRY.create("han2015deep", **s["method_config"])  # every option exists
    record = load_catalog().papers["han2015deep"]
    assert record.status == "implemented"
    claimed = [record.claims[i] for i in s["claims"]]
    assert all(c.model == "LeNet-300-100" and c.compare is not None for c in claimed)
    spec = s["architectures"]["baseline"]
    lenet = archs.build(archs.ArchSpec(spec["name"], tuple(spec["widths"])), 1, 10, (28, 28))
    assert sum(p.numel() for p in lenet.parameters()) == 266_610  # Table 2: 266K weights (with biases)
