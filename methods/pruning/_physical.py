"""Make structured pruning physical: remove zeroed output channels for real.

The dependency analysis is deliberately small (Torch-Pruning's DependencyGraph is the
general version): the model is traced with torch.fx and, for every ``Conv2d``
(groups=1), the single path to its consumer is followed through channel-wise layers
(BatchNorm2d, activations, pooling, dropout, and Flatten where the map is 1x1) to the
next ``Conv2d`` or ``Linear``. Any branch (residual add, concat, several users) makes
that layer "not removable" and it stays masked: physical "where possible".

A channel is removed only when doing so is exact: its conv row and bias are zero and,
if a BatchNorm follows, its gamma and beta are zero, so the channel carries exactly
0 through ReLU-like activations and pooling and contributes nothing downstream.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

PASS_THROUGH = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                nn.Dropout, nn.Dropout2d)


@dataclass
class Chain:
    conv: str                  # producer Conv2d
    bn: str | None             # BatchNorm2d on the path, if any
    consumer: str              # Conv2d or Linear that reads the channels


def find_chains(model: nn.Module, example: torch.Tensor) -> dict[str, Chain]:
    """Producer conv name -> its chain, for every conv whose channels can be removed safely."""
    gm = fx.symbolic_trace(model)
    ShapeProp(gm).propagate(example)
    mods = dict(gm.named_modules())
    chains = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods[node.target], nn.Conv2d) or mods[node.target].groups != 1:
            continue
        bn, cur = None, node
        while True:
            users = list(cur.users)
            if len(users) != 1 or users[0].op != "call_module":
                break
            nxt = users[0]
            m = mods[nxt.target]
            if isinstance(m, nn.BatchNorm2d) and bn is None:
                bn, cur = nxt.target, nxt
            elif isinstance(m, PASS_THROUGH):
                cur = nxt
            elif isinstance(m, nn.Flatten) and tuple(cur.meta["tensor_meta"].shape[2:]) in ((1, 1), ()):
                cur = nxt
            elif (isinstance(m, nn.Conv2d) and m.groups == 1) or isinstance(m, nn.Linear):
                chains[node.target] = Chain(node.target, bn, nxt.target)
                break
            else:
                break
    return chains


@torch.no_grad()
def zero_bn_of_masked_channels(model: nn.Module, chains: dict[str, Chain]) -> None:
    """Zero gamma/beta (and conv bias) of channels whose conv rows are all zero (structured masks)."""
    mods = dict(model.named_modules())
    for ch in chains.values():
        conv = mods[ch.conv]
        dead = conv.weight.flatten(1).abs().sum(1) == 0
        if conv.bias is not None:
            conv.bias[dead] = 0
        if ch.bn is not None:
            mods[ch.bn].weight[dead] = 0
            mods[ch.bn].bias[dead] = 0


def _keep_rows(t: torch.Tensor, keep: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach()[keep].clone(), requires_grad=t.requires_grad)


@torch.no_grad()
def remove_zero_channels(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int]:
    """A copy of ``model`` with exactly-dead output channels removed; returns (model, channels removed)."""
    model = copy.deepcopy(model).eval()
    chains = find_chains(model, example)
    mods = dict(model.named_modules())
    removed = 0
    for ch in chains.values():
        conv, bn, nxt = mods[ch.conv], mods[ch.bn] if ch.bn else None, mods[ch.consumer]
        dead = conv.weight.flatten(1).abs().sum(1) == 0
        if conv.bias is not None:
            dead &= conv.bias == 0
        if bn is not None:
            dead &= (bn.weight == 0) & (bn.bias == 0)
        keep = (~dead).nonzero().flatten()
        if len(keep) in (0, conv.out_channels):
            continue
        conv.weight = _keep_rows(conv.weight, keep)
        if conv.bias is not None:
            conv.bias = _keep_rows(conv.bias, keep)
        conv.out_channels = len(keep)
        if bn is not None:
            bn.weight, bn.bias = _keep_rows(bn.weight, keep), _keep_rows(bn.bias, keep)
            bn.running_mean, bn.running_var = bn.running_mean[keep].clone(), bn.running_var[keep].clone()
            bn.num_features = len(keep)
        nxt.weight = nn.Parameter(nxt.weight.detach()[:, keep].clone())
        if isinstance(nxt, nn.Conv2d):
            nxt.in_channels = len(keep)
        else:
            nxt.in_features = len(keep)
        removed += int(dead.sum())
    return model, removed
