"""Conv -> consumer chains: the layers whose channels a reconstruction-based pruner may drop.

ThiNet, He et al.'s channel pruning, NISP, Fisher pruning and Ye et al. choose the output channels
of one conv by what its *single* consumer does with them (reconstruct the consumer's output, fold a
constant channel into the consumer's bias). That needs a chain: a plain conv (groups=1) whose
channels go, through at most one BatchNorm and channel-wise operations, to exactly one Conv2d
(groups=1) or Linear that reads them one input per channel and reads nothing else.

The chains are read off Torch-Pruning's dependency graph (``_surgery.channel_groups``): a chain is
a channel group with one producer (the conv itself), at most one normalisation layer, no other
parameterised layer and one consumer whose inputs are exactly these channels, in order. A residual
add (several producers), a concatenation or a second reader (the consumer reads more than these
channels, or there are several consumers) and a Flatten over a map larger than 1x1 (several
inputs per channel) all leave a conv out. Removal itself is ``_surgery.prune_channels`` /
``remove_dead_channels`` (Torch-Pruning), so no graph code of our own remains here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mcbench.methods.pruning._surgery import channel_groups


@dataclass
class Chain:
    conv: str                  # producer Conv2d
    bn: str | None             # BatchNorm on the path, if any
    consumer: str              # Conv2d or Linear that reads the channels


def _reads_exactly(consumer: nn.Module, channels: int) -> bool:
    if isinstance(consumer, nn.Conv2d):
        return consumer.groups == 1 and consumer.in_channels == channels
    return isinstance(consumer, nn.Linear) and consumer.in_features == channels


def find_chains(model: nn.Module, example: torch.Tensor) -> dict[str, Chain]:
    """Producer conv name -> its chain, for every conv whose channels go to one consumer only."""
    mods = dict(model.named_modules())
    chains = {}
    for g in channel_groups(model, example):
        root = mods[g.root]
        identity = list(range(g.channels))
        if not (isinstance(root, nn.Conv2d) and root.groups == 1) or list(g.producers) != [g.root]:
            continue
        if g.others or len(g.norms) > 1 or any(idx != identity for idx in g.norms.values()):
            continue
        if len(g.consumers) != 1 or g.consumer_index.get(g.consumers[0]) != identity:
            continue
        if _reads_exactly(mods[g.consumers[0]], g.channels):
            chains[g.root] = Chain(g.root, next(iter(g.norms), None), g.consumers[0])
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
