"""Shared checks for compact architectures: a forward pass on the task input and one training step."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from mcbench.benchmarks.complexity import Counted, build_paper_config, count, paper_context
from mcbench.methods.registry import REGISTRY


def task_model(key: str, in_chans: int = 1, size: tuple[int, int] = (8, 8), classes: int = 10, **config) -> nn.Module:
    """The method's task-scaled network (its default config unless overridden), built on CPU."""
    torch.manual_seed(0)
    ctx = dataclasses.replace(paper_context(in_chans, size, classes), device=torch.device("cpu"))
    return REGISTRY.create(key, **config).build(ctx)


def forward_and_one_step(model: nn.Module, in_chans: int, size: tuple[int, int], classes: int) -> None:
    """Logits of the right shape, finite; one SGD step changes the weights and lowers the loss on its batch."""
    torch.manual_seed(0)
    x, y = torch.randn(16, in_chans, *size), torch.randint(0, classes, (16,))
    model.train()
    out = model(x)
    assert out.shape == (16, classes) and torch.isfinite(out).all()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    # The loss right after the step, not after several: on 8x8 inputs IGCV3's loss oscillates from the
    # second step on (2.33 -> 2.17 -> 2.37 at lr 0.05 on an AVX-512 CPU), while every network's first step
    # lowers it by 0.05 or more.
    assert F.cross_entropy(model(x), y).item() < loss.item()


def paper_count(key: str, config: dict, input_chw: tuple[int, int, int], classes: int = 1000) -> Counted:
    c, h, w = input_chw
    return count(build_paper_config(key, config, c, (h, w), classes), c, (h, w))
