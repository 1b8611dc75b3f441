"""The Fashion-MNIST retrieval variant and Recall@K."""
from __future__ import annotations

import pytest
import torch

from mcbench.benchmarks.data import load_digits
from mcbench.benchmarks.measure import recall_at_k_pct
from mcbench.benchmarks.tasks import TASKS, retrieval_splits


def test_recall_at_k_on_a_hand_computed_toy_embedding():
    # points on a line; labels 0 0 1 1 2 1
    e = torch.tensor([[0.0], [1.0], [10.0], [11.0], [20.0], [50.0]])
    y = torch.tensor([0, 0, 1, 1, 2, 1])
    # nearest other point: 0->1 (hit), 1->0 (hit), 10->11 (hit), 11->10 (hit), 20->11 (miss), 50->20 (miss)
    assert recall_at_k_pct(e, y, 1) == pytest.approx(400 / 6)
    # 2 nearest: 20 -> {11, 10} (miss, the only label-2 item), 50 -> {20, 11} (hit: 11 has label 1)
    assert recall_at_k_pct(e, y, 2) == pytest.approx(500 / 6)
    assert recall_at_k_pct(e, y, 5) == pytest.approx(500 / 6)  # the lone label-2 item can never be matched
    with pytest.raises(ValueError):
        recall_at_k_pct(e, y, 6)


def test_recall_is_perfect_for_separated_clusters_and_chance_for_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(5).repeat_interleave(40)
    clusters = torch.nn.functional.one_hot(y).float() * 10 + 0.1 * torch.randn(200, 5, generator=g)
    assert recall_at_k_pct(clusters, y, 1) == 100.0
    noise = recall_at_k_pct(torch.randn(200, 5, generator=g), y, 1)
    assert 5 < noise < 40  # about 1 in 5


def test_retrieval_split_trains_on_some_classes_and_retrieves_the_others():
    s = retrieval_splits(load_digits(), (0, 1, 2, 3, 4))
    assert s.num_classes == 5
    assert set(s.y_train.tolist()) == set(s.y_val.tolist()) == {0, 1, 2, 3, 4}
    assert set(s.y_test.tolist()) == {5, 6, 7, 8, 9}           # held-out classes only, never trained on
    assert len(s.x_train) == len(s.y_train) and len(s.x_test) == len(s.y_test)
    t = TASKS["fmnist-retrieval"]
    assert t.kind == "retrieval" and "Recall@" in t.description


def test_the_sweep_refuses_an_unknown_task_kind(tmp_path):
    import dataclasses

    from mcbench.benchmarks.runner import Harness, SweepConfig

    odd = dataclasses.replace(TASKS["digits"], name="digits-odd", kind="segmentation")
    cfg = SweepConfig(task="digits", budget="smoke", db=tmp_path / "r.sqlite", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="segmentation task"):
        Harness(cfg, splits=load_digits(), task=odd)


def test_embeddings_are_the_classifier_input():
    from mcbench.benchmarks.measure import embeddings

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    x = torch.randn(5, 2, 2)
    with torch.no_grad():
        want = model[2](model[1](model[0](x)))
    assert torch.allclose(embeddings(model, x, batch_size=2), want)


@pytest.mark.slow
def test_a_retrieval_sweep_stores_recall_at_k_on_the_held_out_classes(tmp_path):
    """digits as a retrieval task (train on 0-4, retrieve 5-9): rows carry Recall@1/2/4/8 and no top-1."""
    import dataclasses
    import json
    import math

    from mcbench.benchmarks.runner import SweepConfig, run_sweep
    from mcbench.benchmarks.store import ResultStore
    from mcbench.benchmarks.tasks import RECALL_AT

    task = dataclasses.replace(TASKS["digits"], name="digits-retrieval", kind="retrieval")
    splits = retrieval_splits(load_digits(), (0, 1, 2, 3, 4))
    cfg = SweepConfig(task="digits", budget="smoke", seeds=[0], threads=1, methods=["student"],
                      db=tmp_path / "r.sqlite", cache_dir=tmp_path / "c")
    rows = run_sweep(cfg, splits=splits, task=task, log=lambda *_: None)
    assert [r.method for r in rows] == ["student"]
    recall = json.loads(rows[0].recall_at_k_pct_json)
    assert sorted(int(k) for k in recall) == list(RECALL_AT)
    values = [recall[str(k)] for k in RECALL_AT]
    assert values == sorted(values) and all(0 <= v <= 100 for v in values)   # Recall@K grows with K
    assert values[0] > 100 / 5 + 10       # above chance (5 held-out classes) for a trained embedding
    assert rows[0].recall_at_1_pct == values[0] and math.isnan(rows[0].top1_acc_pct)
    with ResultStore(tmp_path / "r.sqlite", readonly=True) as store:
        assert store.dataframe()["recall_at_1_pct"].tolist() == [values[0]]
