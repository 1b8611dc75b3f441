"""A paper's own network configuration, built on the meta device and counted.

Compact-network papers report parameters and mult-adds of their ImageNet configuration (e.g.
MobileNet 1.0-224: 4.2M parameters, 569M mult-adds). The method's own ``build(ctx)`` is called
with the paper's config, input size and classes inside ``torch.device("meta")``: no memory is
allocated and no weights are initialised, so a 224x224 ImageNet network is counted in a second.
``torch.utils.flop_counter`` works on meta tensors (it reads shapes only), and parameters are
counted from shapes. The paper's figures live in the record's ``complexity`` block.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mcbench.benchmarks.measure import count_flops, macs_from_flops
from mcbench.methods.protocols import MethodContext
from mcbench.methods.registry import REGISTRY


@dataclass(frozen=True)
class Counted:
    params_count: int
    macs: int            # flop_counter FLOPs / 2 (conv and matmul; BN, ReLU and pooling are not counted)


def _unavailable(*_a, **_k):
    raise RuntimeError("a paper configuration is built for counting only: no training, data or teacher")


def paper_context(in_chans: int, input_size: tuple[int, int], num_classes: int, device: str = "meta") -> MethodContext:
    """A context that lets ``build(ctx)`` run and refuses everything that needs data or training."""
    return MethodContext(num_classes=num_classes, in_chans=in_chans, input_size=tuple(input_size), epochs_scratch=0,
                         epochs_finetune=0, train_fn=_unavailable, build_student=_unavailable,
                         build_baseline=_unavailable, load_baseline=_unavailable, load_teacher=_unavailable,
                         calibration_batches=_unavailable, device=torch.device(device))


def build_paper_config(key: str, method_config: dict, in_chans: int, input_size: tuple[int, int],
                       num_classes: int, device: str = "meta") -> nn.Module:
    """The network of method ``key`` with ``method_config``, on the meta device (counting) or on
    ``device="cpu"`` with freshly initialised weights (timing only: untrained, so no accuracy)."""
    method = REGISTRY.create(key, **method_config)
    if not hasattr(method, "build"):
        raise ValueError(f"{key} has no build(ctx): paper configurations exist for compact/acceleration methods")
    ctx = paper_context(in_chans, input_size, num_classes, device)
    with torch.device(device):
        model = method.build(ctx)
    return model.eval()


def count(model: nn.Module, in_chans: int, input_size: tuple[int, int]) -> Counted:
    """Parameters and MACs at batch 1; works on meta and real models alike."""
    device = next(model.parameters()).device
    example = torch.empty(1, in_chans, *input_size, device=device)
    params = sum(p.numel() for p in model.parameters())
    return Counted(params, macs_from_flops(count_flops(model, example)))
