"""What an importance criterion sees of one layer: the ``LayerView``.

Torch-Pruning's criteria score a *group* of coupled layers; ours score one prunable layer
(``Conv2d``/``Linear``) but see everything a data-driven or reconstruction-based paper needs:

- ``weight`` (the live parameter) and ``grad`` (its ``.grad`` when one exists, e.g. inside
  the fine-tuning loop, or accumulated over calibration batches with ``loss=``);
- ``bn``: the ``BatchNorm`` that directly follows the layer (its gamma, beta and running
  statistics through the properties below), found by tracing the model with torch.fx;
- ``inputs`` / ``outputs``: the layer's input and output over the calibration batches
  (concatenated on the batch axis; forward hooks, eval mode, no gradient), only when asked for;
- ``consumer``: the next layer that reads this layer's output channels when those channels can
  be removed for real (see ``_physical.find_chains``), else ``None``.

``layer_views`` builds them; a criterion is ``Callable[[LayerView], Tensor]``. A paper that only
needs the weight keeps writing ``importance(weight)`` (``PruningMethod.criterion`` adapts it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import fx, nn

from mcbench.methods.pruning._physical import find_chains

PRUNABLE = (nn.Conv2d, nn.Linear)
Criterion = Callable[["LayerView"], torch.Tensor]


@dataclass
class LayerView:
    name: str
    module: nn.Module
    weight: torch.Tensor
    grad: torch.Tensor | None = None
    bn: nn.modules.batchnorm._BatchNorm | None = None
    inputs: torch.Tensor | None = None
    outputs: torch.Tensor | None = None
    consumer: str | None = None

    @property
    def gamma(self) -> torch.Tensor | None:
        return None if self.bn is None else self.bn.weight.detach()

    @property
    def beta(self) -> torch.Tensor | None:
        return None if self.bn is None else self.bn.bias.detach()

    @property
    def running_mean(self) -> torch.Tensor | None:
        return None if self.bn is None else self.bn.running_mean

    @property
    def running_var(self) -> torch.Tensor | None:
        return None if self.bn is None else self.bn.running_var


def weight_criterion(importance: Callable[[torch.Tensor], torch.Tensor]) -> Criterion:
    """Adapt a weight-only ``importance(weight)`` to a view criterion."""
    return lambda view: importance(view.weight)


def following_bn(model: nn.Module) -> dict[str, str]:
    """Layer name -> name of the BatchNorm whose only input is that layer's output (fx trace; {} if untraceable)."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - data-dependent control flow: no BN pairing, views still work
        return {}
    mods = dict(gm.named_modules())
    out = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods[node.target], PRUNABLE):
            continue
        users = list(node.users)
        if len(users) == 1 and users[0].op == "call_module" and isinstance(
                mods[users[0].target], nn.modules.batchnorm._BatchNorm):
            out[node.target] = users[0].target
    return out


@torch.no_grad()
def collect_activations(model: nn.Module, names: Iterable[str], batches: list[torch.Tensor]
                        ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """name -> (inputs, outputs) of those layers over ``batches`` (eval mode; training mode restored)."""
    mods = dict(model.named_modules())
    seen: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {n: ([], []) for n in names}

    def hook(name: str):
        def fn(_m, inp, out):
            seen[name][0].append(inp[0].detach().clone())
            seen[name][1].append(out.detach().clone())
        return fn

    handles = [mods[n].register_forward_hook(hook(n)) for n in seen]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for xb in batches:
            model(xb.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {n: (torch.cat(i), torch.cat(o)) for n, (i, o) in seen.items()}


def accumulate_grads(model: nn.Module, batches: list[torch.Tensor],
                     loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Parameter name -> gradient of ``sum over batches of loss(logits, x)`` (eval mode; model grads untouched)."""
    params = dict(model.named_parameters())
    saved = {n: p.grad for n, p in params.items()}
    for p in params.values():
        p.grad = None
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for xb in batches:
            xb = xb.to(device)
            loss(model(xb), xb).backward()
        grads = {n: p.grad.detach().clone() for n, p in params.items() if p.grad is not None}
    finally:
        for n, p in params.items():
            p.grad = saved[n]
        model.train(was_training)
    return grads


def layer_views(model: nn.Module, example: torch.Tensor, *, names: Iterable[str] | None = None,
                batches: list[torch.Tensor] | None = None, activations: bool = False,
                loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> dict[str, LayerView]:
    """A ``LayerView`` per prunable layer (or per name in ``names``), in module order.

    ``activations=True`` records inputs/outputs over ``batches``; ``loss`` (``loss(logits, x)``,
    e.g. cross-entropy against the model's own predictions, since calibration batches carry no
    labels) fills ``grad`` with the gradient summed over ``batches``; without it ``grad`` is the
    parameter's current ``.grad`` (``None`` outside training).
    """
    layers = {n: m for n, m in model.named_modules() if isinstance(m, PRUNABLE)}
    wanted = list(layers) if names is None else list(names)
    unknown = [n for n in wanted if n not in layers]
    if unknown:
        raise ValueError(f"layer_views: {unknown} are not Conv2d/Linear layers of {type(model).__name__}")
    if (activations or loss is not None) and not batches:
        raise ValueError("layer_views: activations and gradients need calibration batches")
    mods = dict(model.named_modules())
    bns = following_bn(model)
    try:
        chains = find_chains(model, example)
    except Exception:  # noqa: BLE001 - untraceable model: no removable channels
        chains = {}
    acts = collect_activations(model, wanted, batches) if activations else {}
    grads = accumulate_grads(model, batches, loss) if loss is not None else {}
    views = {}
    for n in wanted:
        m = layers[n]
        g = grads.get(f"{n}.weight") if loss is not None else (None if m.weight.grad is None else m.weight.grad.detach())
        views[n] = LayerView(name=n, module=m, weight=m.weight, grad=g, bn=mods[bns[n]] if n in bns else None,
                             inputs=acts[n][0] if n in acts else None, outputs=acts[n][1] if n in acts else None,
                             consumer=chains[n].consumer if n in chains else None)
    return views
