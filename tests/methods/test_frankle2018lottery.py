"""frankle2018lottery: iterative magnitude pruning with rewinding to theta_0, random re-init control."""
from __future__ import annotations

import torch
from torch import nn

from mcbench.benchmarks.archs import MLP
from mcbench.methods.protocols import MethodContext, TrainReport
from mcbench.methods.pruning._unstructured import magnitude_masks
from mcbench.methods.pruning.frankle2018lottery import frankle2018lottery, layer_rates, rewind
from mcbench.methods.registry import REGISTRY


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(16, 3, (12, 8))


def _fake_train(model, *, epochs, hooks=None, stage="train", **_):
    """Two SGD-like steps of random noise through the method's hooks (masks must survive them)."""
    from mcbench.methods.protocols import StepInfo

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in (1, 2):
        opt.zero_grad()
        model(torch.randn(5, 1, 4, 4)).pow(2).sum().backward()
        hooks.before_step(model, StepInfo(step, 2, 0, 0.1, opt))
        opt.step()
        hooks.after_step(model, step, 2)
    return TrainReport(best_epoch=0, val_top1_acc_pct=50.0, epochs_run=epochs)


def _ctx(seed=0):
    init = _net(100 + seed).state_dict()
    trained = _net(100 + seed)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))                 # "training" moved the weights away from theta_0
    return MethodContext(num_classes=3, in_chans=1, input_size=(4, 4), epochs_scratch=1, epochs_finetune=1,
                         train_fn=_fake_train, build_student=None, build_baseline=lambda: _net(999),
                         load_baseline=lambda: trained, load_teacher=None, calibration_batches=lambda: [],
                         seed=seed, baseline_init_state=lambda: {k: v.clone() for k, v in init.items()})


def test_registered():
    assert "frankle2018lottery" in REGISTRY.keys()


def test_rewinding_restores_the_saved_initialisation_under_the_mask():
    ctx = _ctx()
    theta0 = ctx.baseline_init_state()
    trained = ctx.load_baseline()
    masks = magnitude_masks(trained, layer_rates(["body.1", "body.3", "fc"], 0.5, 0.5))
    rewind(trained, theta0, masks)
    for k, v in trained.state_dict().items():
        layer = k.rsplit(".", 1)[0]
        expect = theta0[k] * masks[layer] if k.endswith("weight") and layer in masks else theta0[k]
        assert torch.equal(v, expect), k


def test_masks_are_nested_and_reach_the_round_density():
    ctx = _ctx()
    m = ctx.load_baseline()
    rates = layer_rates(["body.1", "body.3", "fc"], 0.2, 0.5)
    masks, prev = None, None
    for r in range(1, 4):
        masks = magnitude_masks(m, rates, masks)
        for n, k in masks.items():
            assert abs(k.float().mean().item() - (1 - rates[n]) ** r) < 2.5 / k.numel() * r
            if prev:
                assert not (k & ~prev[n]).any()          # a pruned weight never comes back
        kept = m.body[1].weight.abs()[masks["body.1"]]
        assert kept.min() >= m.body[1].weight.abs()[~masks["body.1"]].max()  # lowest |w| went first (fixed weights)
        prev = masks


def test_ticket_starts_from_theta0_and_the_control_does_not():
    """The method trains tickets from theta_0 * m and the control from another init with the same mask."""
    ctx = _ctx()
    theta0 = ctx.baseline_init_state()
    starts = []

    def spy(model, **kw):
        starts.append({k: v.clone() for k, v in model.state_dict().items()})
        return _fake_train(model, **kw)

    ctx.train_fn = spy
    out = frankle2018lottery(rounds=2, prune_rate=0.5).apply(ctx)
    assert set(out.controls) == {"round1", "random-reinit"}
    ticket_start, control_start = starts[1], starts[2]
    nz = ticket_start["body.1.weight"] != 0
    assert torch.equal(ticket_start["body.1.weight"][nz], theta0["body.1.weight"][nz])
    assert torch.equal(ticket_start["fc.bias"], theta0["fc.bias"])
    assert torch.equal(control_start["body.1.weight"] != 0, nz)      # same mask ...
    assert not torch.equal(control_start["body.1.weight"][nz], theta0["body.1.weight"][nz])  # ... other init
    assert abs(out.extra["weights_remaining_fraction"] - 0.25) < 0.06 and abs(
        out.controls["round1"].extra["weights_remaining_fraction"] - 0.5) < 0.06
    assert (out.model.body[1].weight == 0).float().mean().item() == 1 - nz.float().mean().item()
    blob = out.encoded.encode(out.model)
    from mcbench.methods.encoding.container import payload_sizes

    sizes = payload_sizes(blob)
    w = {n: p for n, p in out.model.named_parameters() if n.endswith("weight")}
    assert sum(sizes[n] for n in w) < 0.5 * sum(p.numel() * 4 for p in w.values())  # 25% dense + indices
    dec = out.encoded.decode(blob)
    x = torch.randn(4, 1, 4, 4)
    assert torch.equal(dec(x), out.model(x))
