"""DarkRank: Accelerating Deep Metric Learning via Cross Sample Similarities Transfer.

Chen, Wang, Zhang (AAAI 2018), arXiv:1707.01220. Key: chen2017darkrank.
Implements the cross-sample similarity transfer of Section 3:
    Similarity of a candidate x to a query q (both embeddings): S(x) = -alpha ||q - x||_2^beta.
    Plackett-Luce probability of a ranking pi of the candidates X = (x_1 .. x_n):
        P(pi | X) = prod_{i=1..n} exp(S(x_pi(i))) / sum_{k=i..n} exp(S(x_pi(k))).
    Soft transfer: L_soft = sum_pi P(pi | X_t) log( P(pi | X_t) / P(pi | X_s) ), the KL divergence
        between the teacher's and the student's distributions over all n! rankings.
    Hard transfer (ListMLE): L_hard = -log P(pi_t | X_s), pi_t the teacher's ranking (candidates in
        decreasing teacher similarity, the most probable ranking under the teacher).
    Every image of a mini-batch is a query; its candidates are the other images of the batch,
    truncated to the ``list_size`` most similar under the teacher (a truncated list: n! stays small
    for the soft loss). Losses are averaged over the queries.
    Total: L = CE(z_s, y) + lambda * L_{soft|hard}, the student's own classification loss on the
    training classes (the paper's metric-learning losses are the base) plus the transfer term.
    Embeddings: the input of each network's classifier (after global pooling), ``embedding_layer``.
Evaluated on the retrieval variant of the task (``fmnist-retrieval``): trained on classes 0-4,
Recall@1/2/4/8 of the embedding on the held-out classes 5-9 (test split); the harness computes it.
Real: the loss and the training of the smaller student. Simulated: nothing.
Deviations: embeddings are L2-normalised before the distances so that teacher (256-d) and student
(64-d) similarities share one scale (the paper tunes alpha, beta for its raw embeddings); alpha = 3,
beta = 3 by default; cross-entropy on the training classes is the base loss instead of the paper's
verification/triplet losses; the list is truncated to the teacher's top ``list_size`` candidates.
AdamW + cosine (the harness recipe) instead of SGD.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from mcbench.methods.protocols import DistillationMethod, ModelOutput
from mcbench.methods.registry import register


def similarity_matrix(emb: torch.Tensor, alpha: float, beta: float, normalize: bool = True) -> torch.Tensor:
    """(B, B): S_ij = -alpha ||e_i - e_j||^beta, e_i = emb[i] (L2-normalised if ``normalize``)."""
    e = F.normalize(emb.flatten(1), dim=1) if normalize else emb.flatten(1)
    d = (e[:, None, :] - e[None, :, :]).pow(2).sum(-1).clamp_min(1e-12).sqrt()   # cdist without NaN gradients at 0
    return -alpha * d.pow(beta)


def plackett_luce_log_prob(scores: torch.Tensor) -> torch.Tensor:
    """log P(pi | X) of the ranking that lists ``scores`` in their given order (last dim):
    sum_i [ s_i - log sum_{k >= i} exp(s_k) ]."""
    tail = torch.logcumsumexp(scores.flip(-1), dim=-1).flip(-1)
    return (scores - tail).sum(-1)


def truncated_lists(s_teacher: torch.Tensor, s_student: torch.Tensor, list_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query (row), the ``list_size`` candidates most similar under the teacher (self excluded), in
    the teacher's order: (B, n) teacher scores and the student's scores of the same candidates."""
    b = s_teacher.shape[0]
    if not 1 <= list_size <= b - 1:
        raise ValueError(f"list_size must be in 1..{b - 1} for a batch of {b}, got {list_size}")
    eye = torch.eye(b, dtype=torch.bool, device=s_teacher.device)
    idx = s_teacher.masked_fill(eye, float("-inf")).topk(list_size, dim=1).indices   # sorted, most similar first
    return s_teacher.gather(1, idx), s_student.gather(1, idx)


def hard_rank_loss(t_list: torch.Tensor, s_list: torch.Tensor) -> torch.Tensor:
    """ListMLE: -log P(pi_t | X_s), ``t_list``/``s_list`` already in the teacher's order; mean over queries."""
    return -plackett_luce_log_prob(s_list).mean()


def soft_rank_loss(t_list: torch.Tensor, s_list: torch.Tensor) -> torch.Tensor:
    """KL(P(. | X_t) || P(. | X_s)) over all n! rankings of each list; mean over queries."""
    n = t_list.shape[1]
    perms = torch.tensor(list(itertools.permutations(range(n))), device=t_list.device)   # (n!, n)
    log_pt = plackett_luce_log_prob(t_list[:, perms])    # (B, n!)
    log_ps = plackett_luce_log_prob(s_list[:, perms])
    return (log_pt.exp() * (log_pt - log_ps)).sum(1).mean()


def darkrank_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor, mode: str, alpha: float, beta: float,
                  list_size: int, normalize: bool = True) -> torch.Tensor:
    s_t = similarity_matrix(teacher_emb.detach(), alpha, beta, normalize)
    s_s = similarity_matrix(student_emb, alpha, beta, normalize)
    t_list, s_list = truncated_lists(s_t, s_s, min(list_size, s_t.shape[0] - 1))
    return soft_rank_loss(t_list, s_list) if mode == "soft" else hard_rank_loss(t_list, s_list)


@register(family="distillation")
class chen2017darkrank(DistillationMethod):
    feature_layers = ("flatten",)   # the task CNNs' embedding: globally pooled features, the classifier's input

    @dataclass
    class Config:
        mode: Literal["soft", "hard"] = "soft"                  # soft: KL over rankings; hard: ListMLE
        alpha: Annotated[float, Field(gt=0)] = 3.0              # similarity scale
        beta: Annotated[float, Field(gt=0)] = 3.0               # distance exponent
        list_size: Annotated[int, Field(ge=1, le=6)] = 4        # truncated list (n! rankings for the soft loss)
        weight: Annotated[float, Field(ge=0)] = 1.0             # lambda, weight of the transfer term
        normalize: bool = True                                  # L2-normalise embeddings before distances

    def loss(self, student: ModelOutput, targets: torch.Tensor | None, teacher: ModelOutput | None) -> torch.Tensor:
        if teacher is None:
            raise ValueError("chen2017darkrank needs teacher outputs")
        c = self.config
        (name,) = self.feature_layers
        transfer = darkrank_loss(student.features[name], teacher.features[name], c.mode, c.alpha, c.beta,
                                 c.list_size, c.normalize)
        base = F.cross_entropy(student.logits, targets) if targets is not None else torch.zeros(())
        return base + c.weight * transfer
