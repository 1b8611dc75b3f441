"""Every pruning method yields rows at two or more compression levels, labelled so a curve can be drawn.

A method's curve is its own result plus the controls carrying the same ``level_knob`` (``flows.prune.at_level``);
controls that are not levels (``l1``, ``random``, ``random-reinit``) carry none.
"""
from __future__ import annotations

import pytest
import torch

from mcbench.methods.flows import prune
from mcbench.methods.protocols import Compressed
from mcbench.methods.registry import REGISTRY

PRUNING = [k for k in REGISTRY.keys() if REGISTRY.get(k).family == "pruning"]


def test_level_labels():
    out = prune.at_level(Compressed(torch.nn.Linear(2, 2), real=True, note=""), "channel_ratio", 0.7)
    assert (out.extra["level_knob"], out.extra["level_value"]) == ("channel_ratio", 0.7)
    assert prune.level_kind("channel_ratio", 0.7) == "ratio70"
    assert prune.level_kind("sparsity", 0.95) == "sparsity95"
    assert prune.level_kind("rho", 8.0) == "rho800"


@pytest.mark.slow
@pytest.mark.parametrize("key", PRUNING)
def test_method_gives_two_or_more_levels_of_one_knob(key):
    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    ctx = _tiny_context(Walk(out=None))
    init = {k: v.clone() for k, v in ctx.build_baseline().state_dict().items()}
    ctx.baseline_init_state = lambda: {k: v.clone() for k, v in init.items()}   # for rewinding (lottery ticket)
    out = REGISTRY.create(key).apply(ctx)
    knob = out.extra.get("level_knob")
    assert knob, f"{key}: its own result carries no level_knob"
    levels = {out.extra["level_value"]} | {c.extra["level_value"] for c in out.controls.values()
                                           if c.extra.get("level_knob") == knob}
    assert len(levels) >= 2, f"{key}: levels {levels} of {knob}"
    other = [c.extra.get("level_knob") for c in out.controls.values() if c.extra.get("level_knob") not in (None, knob)]
    assert not other, f"{key}: controls on another knob {other}"
