"""polino2018model: bucketed uniform quantization, quantized distillation through shadow weights,
learned quantization points, and the encoded bytes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcbench.methods.distillation.hinton2015distilling import kd_loss
from mcbench.methods.distillation.polino2018model import (bucket_codes, bucketed_bits_per_weight, bucketed_format,
                                                          codebook_format, freeze_bucketed, freeze_learned_points,
                                                          make_bucketed, make_learned_points, quantize_bucketed)

KEY = "polino2018model"


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))


def test_bucketed_quantization_matches_hand_computation():
    # bucket 1: [0, 0.3, 1.0, 0.6] -> alpha 1, beta 0, s = 3: levels 0, 1/3, 2/3, 1
    # bucket 2: [-2, 2, 1, -1]     -> alpha 4, beta -2: levels -2, -2/3, 2/3, 2
    w = torch.tensor([0.0, 0.3, 1.0, 0.6, -2.0, 2.0, 1.0, -1.0])
    codes, alpha, beta = bucket_codes(w, bits=2, bucket_size=4)
    assert codes.tolist() == [0, 1, 3, 2, 0, 3, 2, 1]      # round(0.9) = 1, round(1.8) = 2, round(2.25) = 2, round(0.75) = 1
    assert alpha.tolist() == [1.0, 4.0] and beta.tolist() == [0.0, -2.0]
    q = quantize_bucketed(w, 2, 4)
    assert q.tolist() == pytest.approx([0, 1 / 3, 1, 2 / 3, -2, 2, 2 / 3, -2 / 3], abs=1e-6)


def test_each_bucket_holds_at_most_two_to_the_b_values_and_buckets_differ():
    torch.manual_seed(0)
    w = torch.cat([torch.randn(300) * 0.01, torch.randn(300) * 5])
    q = quantize_bucketed(w, 3, 300)
    assert len(torch.unique(q[:300])) <= 8 and len(torch.unique(q[300:])) <= 8
    # a bucket's scale is its own: the small-weight bucket keeps a fine grid
    assert (q[:300] - w[:300]).abs().max() < 0.01 and q[:300].abs().max() < 0.1


def test_quantized_distillation_updates_the_shadow_weights_with_the_gradient_at_q():
    torch.manual_seed(0)
    student, teacher = make_bucketed(_net(), 2, 16), _net()
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    shadow = student[0].parametrizations.weight.original
    q = quantize_bucketed(shadow.detach(), 2, 16)
    assert torch.equal(student[0].weight, q)               # the forward pass runs with Q(w)
    loss = kd_loss(student(x), teacher(x).detach(), y, 4.0, 0.3)
    loss.backward()
    # the shadow's gradient is the gradient with respect to Q(w) (straight-through)
    qnet = _net()
    with torch.no_grad():
        qnet[0].weight.copy_(q)
        qnet[0].bias.copy_(student[0].bias)
        qnet[3].weight.copy_(student[3].weight)
        qnet[3].bias.copy_(student[3].bias)
    kd_loss(qnet(x), teacher(x).detach(), y, 4.0, 0.3).backward()
    assert torch.allclose(shadow.grad, qnet[0].weight.grad, atol=1e-6)
    assert shadow.grad.abs().sum() > 0


def test_bucketed_encoding_round_trips_and_is_smaller():
    torch.manual_seed(0)
    model = freeze_bucketed(make_bucketed(_net(), 4, 32), 4, 32)
    fmt = bucketed_format(_net, 4, 32)
    data = fmt.encode(model)
    back = fmt.decode(data)
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    raw = sum(p.numel() for p in model.parameters()) * 4
    assert len(data) < raw                       # 4-bit codes + per-bucket floats, header included
    assert 4 < bucketed_bits_per_weight(model, 4, 32) < 32


def test_learned_points_get_the_summed_gradient_and_the_weights_none():
    torch.manual_seed(0)
    model = _net()
    points = make_learned_points(model, 2)
    assert len(points) == 2 and all(p.numel() == 4 for p in points)
    assert not any(p.requires_grad for n, p in model.named_parameters() if "points" not in n)
    x = torch.randn(4, 1, 8, 8)
    w_q = model[0].weight                                # p[assignment]
    assert len(torch.unique(w_q)) <= 4
    out = model(x)
    g_out = torch.randn_like(out)
    (out * g_out).sum().backward()
    # dL/dp_j = sum of dL/dQ(v) over the weights assigned to p_j
    lp = model[0].parametrizations.weight[0]
    assign = lp.assignment(model[0].parametrizations.weight.original)
    w_leaf = w_q.detach().clone().requires_grad_(True)
    ref = F.linear(F.relu(F.conv2d(x, w_leaf, model[0].bias)).flatten(1), model[3].weight, model[3].bias)
    (ref * g_out).sum().backward()
    expected = torch.zeros(4).index_add_(0, assign.reshape(-1), w_leaf.grad.reshape(-1))
    assert torch.allclose(lp.points.grad, expected, atol=1e-5)
    frozen = freeze_learned_points(model)
    fmt = codebook_format(_net, 2)
    back = fmt.decode(fmt.encode(frozen))
    assert torch.equal(back[0].weight, frozen[0].weight) and len(torch.unique(frozen[3].weight)) <= 4


@pytest.mark.slow
def test_method_on_digits_gives_encoded_student_and_both_controls(smoke_harness):
    from mcbench.methods.registry import REGISTRY

    method = REGISTRY.create(KEY, bits=2)
    out = method.apply(smoke_harness.context(0, method))
    assert set(out.controls) == {"no-kd", "differentiable"}
    for c in (out, *out.controls.values()):
        assert c.encoded is not None and c.storage_real and not c.compute_real
        back = c.encoded.decode(c.encoded.encode(c.model))
        assert all(torch.equal(v, back.state_dict()[k]) for k, v in c.model.state_dict().items())
