"""Deep k-Means (Wu et al. 2018): the trace-form k-means regulariser, its gradient, sharing and the encoded file."""
from __future__ import annotations

import math

import pytest
import torch

from mcbench.methods.encoding import container
from mcbench.methods.quantization import wu2018deep as D
from mcbench.methods.registry import REGISTRY


def test_registered():
    assert REGISTRY.get("wu2018deep").family == "quantization"


def _indicator(labels: torch.Tensor, k: int) -> torch.Tensor:
    f = torch.zeros(len(labels), k, dtype=torch.float64)
    f[torch.arange(len(labels)), labels] = 1.0
    return f / f.sum(0).clamp(min=1).sqrt()


def test_penalty_is_the_trace_form_of_the_kmeans_objective_by_hand():
    w = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0], [0.0, 6.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1])
    # cluster 0: mean (2, 0), squared distances 1 + 1; cluster 1: mean (0, 4), 4 + 0 + 4
    assert D.kmeans_penalty(w, labels, 2).item() == pytest.approx(10.0)
    f = _indicator(labels, 2)
    trace_form = torch.trace(w.T @ w) - torch.trace(f.T @ w @ w.T @ f)
    assert D.kmeans_penalty(w, labels, 2).item() == pytest.approx(trace_form.item())


def test_gradient_pulls_each_subvector_to_its_cluster_mean():
    torch.manual_seed(0)
    w = torch.randn(12, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3] * 3)
    (0.5 * D.kmeans_penalty(w, labels, 4)).backward()
    f = _indicator(labels, 4)
    expected = w.detach() - f @ f.T @ w.detach()                      # lambda (W - F F^T W), lambda = 1
    assert torch.allclose(w.grad, expected)
    # a step of size 1/2 halves every distance to the (unmoved) cluster mean: harder assignments
    means = D.projected(w.detach(), labels, 4)
    stepped = w.detach() - 0.5 * w.grad
    assert torch.allclose(D.projected(stepped, labels, 4), means)
    assert torch.allclose(stepped - means, 0.5 * (w.detach() - means))


def test_lloyd_ends_at_a_fixed_point():
    torch.manual_seed(0)
    x = torch.cat([torch.randn(50, 3) * 0.1 + 1, torch.randn(50, 3) * 0.1 - 1, torch.randn(50, 3) * 0.1])
    centres, labels = D.kmeans(x, 3)
    for j in range(3):
        assert torch.allclose(centres[j], x[labels == j].mean(0), atol=1e-5)
    assert len(labels.unique()) == 3


def test_rows_are_kernel_rows():
    w = torch.arange(2 * 3 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3, 3)
    r = D.rows(w)
    assert r.shape == (18, 3) and torch.equal(r[4], w[0, 1, 1])


def test_apply_shares_kernel_rows_and_adds_the_deep_compression_control():
    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    walk = Walk(out=None)
    k = 8
    out = REGISTRY.create("wu2018deep", clusters=k, update_every=4).apply(_tiny_context(walk))
    assert walk.trained == 2                                          # re-training + the control's fine-tuning
    convs = D.conv_layers(out.model)
    for n in convs:
        assert len(torch.unique(D.rows(out.model.get_submodule(n).weight), dim=0)) <= k
    x = torch.randn(3, 1, 8, 8)
    data = out.encoded.encode(out.model)
    assert torch.equal(out.encoded.decode(data)(x), out.model(x))
    sizes = container.payload_sizes(data)
    for n in convs:
        n_rows = D.rows(out.model.get_submodule(n).weight).shape[0]
        assert sizes[f"{n}.assign"] <= math.ceil(n_rows * 3 / 8) + 4 * k + 4     # 3-bit indices (K = 8)
        assert f"{n}.weight" not in sizes
    dc = out.controls["deep-compression"]
    for n in convs:
        assert len(dc.model.get_submodule(n).weight.unique()) <= k           # scalar sharing at K values
    assert torch.equal(dc.encoded.decode(dc.encoded.encode(dc.model))(x), dc.model(x))


def test_row_validation_score_is_of_the_shared_model():
    """The report's validation top-1 is measured after weight sharing, on the model that is scored."""
    import dataclasses

    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    seen = []

    def evaluate(model):
        seen.append(max(len(torch.unique(D.rows(model.get_submodule(n).weight), dim=0)) for n in D.conv_layers(model)))
        return 12.5

    ctx = dataclasses.replace(_tiny_context(Walk(out=None)), evaluate=evaluate)
    out = REGISTRY.create("wu2018deep", clusters=4, update_every=4, dc_control=False).apply(ctx)
    assert out.train_report.val_top1_acc_pct == 12.5 and seen and max(seen) <= 4
