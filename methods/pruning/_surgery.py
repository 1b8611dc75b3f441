"""Physical channel removal on any traceable network, built on Torch-Pruning's dependency graph.

Real networks branch: a residual add couples the output channels of every conv that writes into the sum, a
concatenation maps one producer's channels to a slice of the consumer's input, and a grouped or
depthwise convolution ties its input channels to its output channels. Torch-Pruning
(``torch_pruning.DependencyGraph``, Fang et al., CVPR 2023) traces the model with autograd and
returns, for the output channels of one layer, the *group* of every coupled parameter slice; this
module keeps to three operations on those groups:

``channel_groups(model, example)``
    one ``ChannelGroup`` per set of coupled output channels, rooted at a Conv2d/Linear (the
    classifier, whose outputs are the logits, is never a root); each says which layers produce
    those channels and which normalisation layers carry them.
``mask_channels(model, groups, keep)``
    the *masked* model: for every dropped channel, the rows (and biases) of every producer in the
    group and the gamma/beta of every BatchNorm in the group are set to 0, so the channel carries
    exactly 0 through the residual sums, ReLUs and pools to every consumer.
``prune_channels(model, example, keep)``
    the *physical* model: a copy with those channels removed for real by Torch-Pruning
    (producers' rows, BN entries, consumers' input columns, grouped-conv bookkeeping).
    It computes the same function as the masked model (``tests/test_pruning_surgery.py``).
``remove_dead_channels(model, example)``
    a copy with every channel that is already exactly 0 in all its producers removed.

A grouped (not depthwise) convolution keeps the same number of channels in every group, so a
group that feeds one must drop the same local channel in every conv group; ``prune_channels``
refuses an asymmetric selection in one line rather than build a network that computes something
else. ``symmetric_keep`` turns per-channel scores into such a selection.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

PRODUCERS = (nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class ChannelGroup:
    """Output channels of ``root`` and everything coupled to them (indices are the root's)."""

    root: str
    channels: int
    producers: dict[str, list[int]] = field(default_factory=dict)   # layer -> its output index per root channel
    norms: dict[str, list[int]] = field(default_factory=dict)       # BatchNorm -> its index per root channel
    consumers: list[str] = field(default_factory=list)              # layers reading these channels as inputs
    consumer_index: dict[str, list[int]] = field(default_factory=dict)  # consumer -> its input index per root
    #                                                                     channel (only where it reads one input per channel)
    others: list[str] = field(default_factory=list)                 # other layers with parameters in the group
    grouped: dict[str, tuple[int, int, list[int]]] = field(default_factory=dict)  # conv -> (groups, per group, map)

    @property
    def conv_groups(self) -> int:
        """The largest ``groups`` of a grouped (not depthwise) conv writing or reading these channels."""
        return max([1] + [g for g, _, _ in self.grouped.values()])


def output_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Conv/Linear layers whose output is the model's output (the classifier): never pruned."""
    names = {m: n for n, m in model.named_modules()}
    last: list[str] = []

    def hook(mod, _inp, out):
        last.append((names[mod], out))

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, PRODUCERS)]
    was = model.training
    model.eval()  # no side effects: BatchNorm running statistics are left as they are
    try:
        with torch.no_grad():
            out = model(example)
    finally:
        model.train(was)
        for h in hs:
            h.remove()
    return [n for n, o in last if o is out or (o.shape == out.shape and torch.equal(o, out))]


def _graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    was = model.training
    model.eval()
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    finally:
        model.train(was)


def _plain(idxs) -> list[int]:
    return [int(i) for i in idxs]


def _describe(dg: tp.DependencyGraph, root: nn.Module, names: dict[nn.Module, str], channels: int) -> ChannelGroup:
    fn = dg.get_pruner_of_module(root).prune_out_channels
    grp = dg.get_pruning_group(root, fn, list(range(channels)))
    out = ChannelGroup(root=names[root], channels=channels)
    for item in grp:
        mod, handler = item.dep.target.module, item.dep.handler
        if mod not in names:
            continue
        idx_of_root = [0] * channels
        for i, r in zip(item.idxs, item.root_idxs):
            idx_of_root[int(r)] = int(i)
        if isinstance(mod, NORMS):
            out.norms[names[mod]] = idx_of_root
        elif isinstance(mod, PRODUCERS) and dg.is_out_channel_pruning_fn(handler):
            out.producers[names[mod]] = idx_of_root
        elif isinstance(mod, PRODUCERS) and dg.is_in_channel_pruning_fn(handler):
            out.consumers.append(names[mod])
            if len(item.idxs) == channels:
                out.consumer_index[names[mod]] = idx_of_root
        else:
            if any(True for _ in mod.parameters(recurse=False)):
                out.others.append(names[mod])
            continue
        if isinstance(mod, nn.Conv2d) and 1 < mod.groups < max(mod.in_channels, mod.out_channels):
            width = mod.out_channels if names[mod] in out.producers else mod.in_channels
            out.grouped[names[mod]] = (mod.groups, width // mod.groups, idx_of_root)
    return out


def channel_groups(model: nn.Module, example: torch.Tensor, *, ignore: list[str] | None = None) -> list[ChannelGroup]:
    """Every set of coupled, removable output channels of ``model``, in module order.

    ``ignore``: layer names never pruned (default: the output layers). A group that contains an
    ignored layer among its producers is left out (pruning it would prune that layer).
    """
    ignore = set(output_layers(model, example) if ignore is None else ignore)
    names = {m: n for n, m in model.named_modules()}
    dg = _graph(model, example)
    groups, seen = [], set()
    for name, mod in model.named_modules():
        if not isinstance(mod, PRODUCERS) or name in ignore or name in seen or mod not in dg.module2node:
            continue
        if isinstance(mod, nn.Conv2d) and mod.groups == mod.out_channels and mod.groups > 1:
            continue   # depthwise: its channels belong to the group of the layer that feeds it
        channels = mod.out_channels if isinstance(mod, nn.Conv2d) else mod.out_features
        g = _describe(dg, mod, names, channels)
        seen.update(g.producers)
        if ignore & set(g.producers):
            continue
        groups.append(g)
    return groups


def symmetric_keep(scores: torch.Tensor, n_keep: int, conv_groups: int = 1) -> torch.Tensor:
    """Bool keep-mask of the ``n_keep`` highest scores; with ``conv_groups`` > 1 the scores are summed
    over the conv groups and the same local channels are kept in every group (``n_keep`` rounded down
    to a multiple of ``conv_groups``, at least one per group)."""
    c = scores.numel()
    g = conv_groups if conv_groups > 1 and c % conv_groups == 0 else 1
    local = scores.detach().float().reshape(g, c // g).sum(0)
    k = max(1, min(c // g, n_keep // g))
    keep_local = torch.zeros(c // g, dtype=torch.bool)
    keep_local[torch.topk(local.cpu(), k).indices] = True
    return keep_local.repeat(g)


def _check(group: ChannelGroup, keep: torch.Tensor) -> None:
    if keep.numel() != group.channels or keep.dtype != torch.bool:
        raise ValueError(f"group {group.root}: keep must be a bool tensor of {group.channels} channels")
    if not keep.any():
        raise ValueError(f"group {group.root}: cannot remove every channel")
    dropped = (~keep).nonzero().flatten().tolist()
    for name, (g, size, idx) in group.grouped.items():
        own = sorted(idx[r] for r in dropped)
        local = [sorted(i % size for i in own if i // size == k) for k in range(g)]
        if any(loc != local[0] for loc in local):
            raise ValueError(f"group {group.root}: {name} is a conv with groups={g}; drop the same local channels "
                             "in every conv group (see symmetric_keep)")


@torch.no_grad()
def mask_channels(model: nn.Module, groups: list[ChannelGroup], keep: dict[str, torch.Tensor]) -> None:
    """Zero every dropped channel of each group in ``keep`` (root -> bool per channel), in place."""
    mods = dict(model.named_modules())
    by_root = {g.root: g for g in groups}
    for root, k in keep.items():
        g = by_root[root]
        _check(g, k)
        dropped = (~k).nonzero().flatten().tolist()
        for name, idx in {**g.producers, **g.norms}.items():
            rows = [idx[r] for r in dropped]
            m = mods[name]
            m.weight[rows] = 0
            if m.bias is not None:
                m.bias[rows] = 0


def prune_channels(model: nn.Module, example: torch.Tensor, keep: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` (on CPU, eval mode) with the dropped channels of each group removed for real."""
    small = copy.deepcopy(model).cpu().eval()
    example = example.cpu()
    groups = {g.root: g for g in channel_groups(small, example)}
    unknown = sorted(set(keep) - set(groups))
    if unknown:
        raise ValueError(f"prune_channels: {unknown} are not roots of removable channel groups")
    for root, k in keep.items():
        _check(groups[root], k)
    dg = _graph(small, example)
    mods = dict(small.named_modules())
    for root, k in keep.items():
        dropped = (~k.cpu()).nonzero().flatten().tolist()
        if dropped:
            mod = mods[root]
            dg.get_pruning_group(mod, dg.get_pruner_of_module(mod).prune_out_channels, dropped).prune()
    return small


@torch.no_grad()
def dead_channels(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """Bool per root channel: True where every producer row and bias and every BN gamma and beta is 0."""
    mods = dict(model.named_modules())
    alive = torch.zeros(group.channels, dtype=torch.bool)
    for name, idx in {**group.producers, **group.norms}.items():
        m = mods[name]
        live = m.weight.detach().reshape(m.weight.shape[0], -1).ne(0).any(1)
        if m.bias is not None:
            live |= m.bias.detach().ne(0)
        alive |= live.cpu()[torch.tensor(idx)]
    return ~alive


def remove_dead_channels(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int]:
    """A copy with every exactly-dead channel removed; returns (model, channels removed).

    A group whose channels are all dead keeps one (a layer of width 0 is not a network), and a group
    feeding a grouped conv removes only channels dead in every conv group.
    """
    model = model.cpu().eval()
    keep = {}
    for g in channel_groups(model, example.cpu()):
        k = ~dead_channels(model, g)
        if g.conv_groups > 1:
            k = k.reshape(g.conv_groups, -1).any(0).repeat(g.conv_groups)
        if not k.any():
            k[0] = True
        if not k.all():
            keep[g.root] = k
    removed = sum(int((~k).sum()) for k in keep.values())
    return (prune_channels(model, example, keep) if keep else copy.deepcopy(model)), removed
