"""chen2017darkrank: Plackett-Luce ranking probabilities, soft (KL over rankings) and hard (ListMLE)
transfer on truncated lists, and a retrieval row with Recall@K."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from mcbench.methods.distillation.chen2017darkrank import (darkrank_loss, hard_rank_loss, plackett_luce_log_prob,
                                                          similarity_matrix, soft_rank_loss, truncated_lists)
from mcbench.methods.protocols import ModelOutput
from mcbench.methods.registry import REGISTRY

KEY = "chen2017darkrank"


def test_similarity_is_minus_alpha_distance_to_the_beta():
    e = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    s = similarity_matrix(e, alpha=2.0, beta=3.0, normalize=False)
    assert s[0, 1].item() == pytest.approx(-2.0 * 5.0 ** 3)
    assert s[0, 0].item() == pytest.approx(0.0, abs=1e-6)
    n = similarity_matrix(e + torch.tensor([[1.0, 0.0], [0.0, 0.0]]), alpha=1.0, beta=2.0)   # unit vectors
    assert n[0, 1].item() == pytest.approx(-((1 - 0.6) ** 2 + 0.8 ** 2))


def test_plackett_luce_matches_hand_computation_and_sums_to_one():
    s = torch.tensor([2.0, 1.0, 0.0])
    by_hand = (2 - math.log(math.e ** 2 + math.e + 1)) + (1 - math.log(math.e + 1)) + 0.0
    assert plackett_luce_log_prob(s).item() == pytest.approx(by_hand)
    perms = torch.tensor(list(itertools.permutations(range(3))))
    assert plackett_luce_log_prob(s[perms]).exp().sum().item() == pytest.approx(1.0)


def test_hard_loss_is_listmle_of_the_teacher_order():
    # lists are in the teacher's order; the student scores them (0, 3): the teacher's top item is last for it
    t, s = torch.tensor([[5.0, 1.0]]), torch.tensor([[0.0, 3.0]])
    assert hard_rank_loss(t, s).item() == pytest.approx(-(0.0 - math.log(1 + math.e ** 3)))
    assert hard_rank_loss(t, torch.tensor([[3.0, 0.0]])).item() < hard_rank_loss(t, s).item()


def test_soft_loss_is_kl_over_rankings():
    # two candidates: P(a before b) = sigmoid(s_a - s_b)
    t, s = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.5, 0.0]])
    p, q = torch.sigmoid(torch.tensor(2.0)).item(), torch.sigmoid(torch.tensor(0.5)).item()
    by_hand = p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    assert soft_rank_loss(t, s).item() == pytest.approx(by_hand, rel=1e-5)
    assert soft_rank_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_rank_loss(t, s + 7.0).item() == pytest.approx(by_hand, rel=1e-5)   # only differences matter


def test_truncated_lists_take_the_teachers_nearest_others_in_its_order():
    s_t = torch.tensor([[0.0, -3.0, -1.0, -2.0], [-3.0, 0.0, -5.0, -4.0], [-1.0, -5.0, 0.0, -9.0],
                        [-2.0, -4.0, -9.0, 0.0]])
    s_s = torch.arange(16.0).view(4, 4)
    t_list, s_list = truncated_lists(s_t, s_s, 2)
    assert t_list[0].tolist() == [-1.0, -2.0] and s_list[0].tolist() == [2.0, 3.0]   # candidates 2, 3 (not self)
    assert t_list[1].tolist() == [-3.0, -4.0] and s_list[1].tolist() == [4.0, 7.0]
    with pytest.raises(ValueError):
        truncated_lists(s_t, s_s, 4)


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_descending_the_transfer_loss_makes_the_student_rank_like_the_teacher(mode):
    torch.manual_seed(0)
    teacher = torch.randn(8, 16)
    student = torch.randn(8, 4, requires_grad=True)   # another dimension: only similarities are compared
    opt = torch.optim.Adam([student], lr=0.05)
    first = darkrank_loss(student, teacher, mode, 3.0, 3.0, 4).item()
    for _ in range(200):
        loss = darkrank_loss(student, teacher, mode, 3.0, 3.0, 4)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    # within each truncated list (the teacher's 4 nearest), the student now puts the teacher's nearest first
    _, s_list = truncated_lists(similarity_matrix(teacher, 3, 3), similarity_matrix(student.detach(), 3, 3), 4)
    assert (s_list.argmax(1) == 0).float().mean() >= 0.75


def test_loss_does_not_depend_on_the_batch_order_and_adds_cross_entropy():
    torch.manual_seed(1)
    t, s = torch.randn(6, 8), torch.randn(6, 3)
    perm = torch.randperm(6)
    assert darkrank_loss(s[perm], t[perm], "soft", 3.0, 3.0, 3).item() == pytest.approx(
        darkrank_loss(s, t, "soft", 3.0, 3.0, 3).item(), rel=1e-5)
    method = REGISTRY.create(KEY, weight=2.0, mode="hard", list_size=3)
    logits, y = torch.randn(6, 5), torch.randint(0, 5, (6,))
    total = method.loss(ModelOutput(logits, {"flatten": s}), y, ModelOutput(torch.randn(6, 5), {"flatten": t}))
    want = torch.nn.functional.cross_entropy(logits, y) + 2.0 * darkrank_loss(s, t, "hard", 3.0, 3.0, 3)
    assert total.item() == pytest.approx(want.item(), rel=1e-6)


@pytest.mark.slow
def test_a_retrieval_row_of_the_distilled_student_carries_recall_at_k(tmp_path):
    import dataclasses
    import json

    from mcbench.benchmarks.data import load_digits
    from mcbench.benchmarks.runner import SweepConfig, run_sweep
    from mcbench.benchmarks.tasks import TASKS, retrieval_splits

    task = dataclasses.replace(TASKS["digits"], name="digits-retrieval", kind="retrieval")
    cfg = SweepConfig(task="digits", budget="smoke", seeds=[0], threads=1, methods=[KEY],
                      db=tmp_path / "r.sqlite", cache_dir=tmp_path / "c")
    rows = run_sweep(cfg, splits=retrieval_splits(load_digits(), (0, 1, 2, 3, 4)), task=task, log=lambda *_: None)
    assert [r.method for r in rows] == [KEY]
    recall = json.loads(rows[0].recall_at_k_pct_json)
    assert set(recall) == {"1", "2", "4", "8"} and recall["1"] > 30.0   # 5 held-out classes: chance is 20%
    assert rows[0].params_count < 100_000                               # the task's small student
