"""LC quantization (Carreira-Perpinan & Idelbayev 2017): optimal C steps per codebook and the LC loop."""
from __future__ import annotations

import itertools

import pytest
import torch

from mcbench.methods.quantization import carreiraperpinan2017modelii as LC
from mcbench.methods.registry import REGISTRY


def _err(w, book):
    return ((w - LC.nearest(w, book)) ** 2).sum().item()


def test_registered():
    assert REGISTRY.get("carreiraperpinan2017modelii").family == "quantization"


def test_kmeans_codebook_is_a_lloyd_fixed_point_and_beats_quantiles():
    torch.manual_seed(0)
    w = torch.cat([torch.randn(300) * 0.05 - 0.5, torch.randn(300) * 0.05 + 0.4, torch.randn(50) * 0.01])
    book = LC.kmeans_1d(w, 3)
    assign = LC.nearest(w, book)
    for c in book:                      # every entry is the mean of its cluster (fixed point of Lloyd)
        assert c.item() == pytest.approx(w[assign == c].mean().item(), abs=1e-6)
    assert _err(w, book) < _err(w, torch.quantile(w, torch.tensor([0.25, 0.5, 0.75])))


def test_binary_and_ternary_scales_are_optimal():
    torch.manual_seed(0)
    w = torch.randn(12)
    b = LC.binary_book(w)
    assert b[1].item() == pytest.approx(w.abs().mean().item())
    for a in torch.linspace(0.05, 2.0, 40):
        assert _err(w, b) <= ((w - a * torch.sign(w)) ** 2).sum().item() + 1e-6
    t = LC.ternary_book(w)
    best = min(((w - a * torch.sign(w) * (w.abs() > th)) ** 2).sum().item()
               for a in torch.linspace(0.01, 3.0, 300) for th in torch.linspace(0, 3.0, 61))
    assert _err(w, t) <= best + 1e-6
    assert len(torch.unique(LC.nearest(w, t))) <= 3


def test_pow2_codebook():
    book = LC.pow2_book(3)
    assert book.tolist() == [-1.0, -0.5, -0.25, -0.125, 0.0, 0.125, 0.25, 0.5, 1.0]


@pytest.mark.parametrize("codebook,limit", [("adaptive", 4), ("ternary", 3), ("binary", 2)])
def test_lc_ends_on_the_codebook_with_penalised_l_steps(codebook, limit):
    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    walk = Walk(out=None)
    out = REGISTRY.create("carreiraperpinan2017modelii", codebook=codebook, k=4, lc_iterations=2).apply(_tiny_context(walk))
    assert walk.trained == 2                                   # one L step per LC iteration
    for m in out.model.modules():
        if isinstance(m, LC.LAYERS):
            assert len(torch.unique(m.weight)) <= limit
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(out.encoded.decode(out.encoded.encode(out.model))(x), out.model(x))


def test_row_validation_score_is_of_the_quantized_model():
    """The report's validation top-1 is measured after the last C step, on the model that is scored."""
    import dataclasses

    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    seen = []

    def evaluate(model):
        seen.append(max(len(torch.unique(m.weight)) for m in model.modules() if isinstance(m, LC.LAYERS)))
        return 12.5

    ctx = dataclasses.replace(_tiny_context(Walk(out=None)), evaluate=evaluate)
    out = REGISTRY.create("carreiraperpinan2017modelii", codebook="adaptive", k=4, lc_iterations=2).apply(ctx)
    assert out.train_report.val_top1_acc_pct == 12.5 and seen and max(seen) <= 4
