"""The harness measures a method's encoded file and operation counts (benchmarks/deployed.py)."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from mcbench.benchmarks.deployed import average_ops, measure_encoded
from mcbench.benchmarks.errors import EncodedModelMismatch
from mcbench.benchmarks.runner import Harness, plan
from mcbench.methods.encoding import container
from mcbench.methods.ops import nonzero_macs, tally
from mcbench.methods.protocols import Compressed, CostLedger, EncodedModel


def _raw_encoding(build, lossy=False):
    def decode(data):
        m = container.decode_model(data, build)
        if lossy:  # a broken codec: the classifier's weights come back scrambled
            with torch.no_grad():
                m.fc.weight.copy_(m.fc.weight.flip(0))
        return m
    return EncodedModel(encode=lambda m: container.encode_model(m, {}), decode=decode, format="raw test codec")


def test_measure_encoded_counts_file_bytes_and_scores_decoded(smoke_harness, digits):
    model, _ = smoke_harness.trained("baseline", 0)
    enc = _raw_encoding(lambda: smoke_harness.build("baseline"))
    from mcbench.benchmarks.train import accuracy_pct
    acc = accuracy_pct(model, digits.x_test, digits.y_test)
    m = measure_encoded(enc, model, digits.x_test, digits.y_test, acc)
    assert m.size_bytes == len(enc.encode(model)) and m.top1_acc_pct == acc
    with pytest.raises(EncodedModelMismatch, match="decoded"):
        measure_encoded(_raw_encoding(lambda: smoke_harness.build("baseline"), lossy=True), model,
                        digits.x_test, digits.y_test, acc, "demo")


def test_average_ops_is_per_sample_over_all_inputs():
    lin = torch.nn.Linear(3, 2, bias=False)
    x = torch.tensor([[1.0, 0.0, 0.0]] * 3 + [[1.0, 1.0, 1.0]])
    out = average_ops(lambda m, xb: tally(m, xb, nonzero_macs), lin, x, batch_size=3)
    assert out["samples"] == 4
    assert out["per_sample"]["macs_dense"] == 6
    assert out["per_sample"]["macs_nonzero_weights_and_inputs"] == pytest.approx((3 * 2 + 6) / 4)


def _spec(h):
    cfg = h.cfg.__class__(task="digits", budget="smoke", methods=["baseline"], seeds=[0])
    return plan(cfg, h.task, h.dataset_label)[0]


def test_harness_row_carries_encoded_size_accuracy_flags_and_ops(smoke_harness, monkeypatch):
    h = smoke_harness
    base, report = h.trained("baseline", 0)
    enc = _raw_encoding(lambda: h.build("baseline"))
    out = Compressed(copy.deepcopy(base), real=False, storage_real=True, compute_real=False, note="test",
                     train_report=report, encoded=enc, count_ops=lambda m, x: tally(m, x, nonzero_macs))
    monkeypatch.setattr(h, "_compress", lambda spec: (out, CostLedger(), False))
    row = h.run(_spec(h))
    assert row.size_bytes_encoded == len(enc.encode(base)) > 0
    assert row.encoded_top1_acc_pct == row.top1_acc_pct and row.encoded_format == "raw test codec"
    assert row.storage_real is True and row.compute_real is False and row.compression_real is False
    ops = json.loads(row.ops_json)
    assert ops["samples"] == len(h.splits.y_test) and ops["per_sample"]["macs_dense"] > 0


def test_harness_fails_loudly_when_decoded_model_differs(smoke_harness, monkeypatch):
    h = smoke_harness
    base, report = h.trained("baseline", 0)
    out = Compressed(copy.deepcopy(base), real=True, note="test", train_report=report,
                     encoded=_raw_encoding(lambda: h.build("baseline"), lossy=True))
    monkeypatch.setattr(h, "_compress", lambda spec: (out, CostLedger(), False))
    with pytest.raises(EncodedModelMismatch, match="raw test codec"):
        h.run(_spec(h))


def test_row_without_encoding_keeps_defaults(smoke_harness, monkeypatch):
    h = smoke_harness
    base, report = h.trained("baseline", 0)
    monkeypatch.setattr(h, "_compress", lambda spec: (Compressed(base, real=True, note="t", train_report=report),
                                                      CostLedger(), False))
    row = h.run(_spec(h))
    assert row.size_bytes_encoded is None and row.encoded_top1_acc_pct is None and row.ops_json == "{}"
    assert row.storage_real is True and row.compute_real is True
