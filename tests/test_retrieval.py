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


def test_the_sweep_refuses_a_retrieval_task_clearly(tmp_path):
    from mcbench.benchmarks.runner import Harness, SweepConfig

    cfg = SweepConfig(task="fmnist-retrieval", budget="smoke", db=tmp_path / "r.sqlite", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="retrieval task"):
        Harness(cfg, splits=load_digits())
