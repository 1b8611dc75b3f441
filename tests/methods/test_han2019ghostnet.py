"""han2019ghostnet: Ghost modules (Eq. 2-5), GhostNet's Table 7 size, the Ghost task network."""
from __future__ import annotations

import torch
from torch import nn

from compact_checks import forward_and_one_step, paper_count
from mcbench.methods.compact.han2019ghostnet import GhostModule, ghost_convolutions
from mcbench.methods.registry import REGISTRY

KEY = "han2019ghostnet"


def test_ghost_module_keeps_the_intrinsic_maps_and_adds_their_cheap_ghosts():
    torch.manual_seed(0)
    g = GhostModule(16, 32, kernel=3, ratio=2, dw_size=3)
    x = torch.randn(2, 16, 8, 8)
    out = g(x)
    assert out.shape == (2, 32, 8, 8)
    intrinsic = g.primary(x)
    assert torch.equal(out[:, :16], intrinsic)             # identity branch (Eq. 3, last map)
    assert torch.allclose(out[:, 16:], g.cheap(intrinsic))  # each ghost from one intrinsic map
    assert g.cheap.groups == 16                             # Phi_ij sees only y'_i


def test_ghost_module_costs_about_one_over_s():
    """Eq. 5-6: speed-up and compression ratio ~ s for a layer with many input channels."""
    for s in (2, 4):
        g = GhostModule(128, 128, 3, ratio=s)
        conv = nn.Conv2d(128, 128, 3, padding=1, bias=False)
        ratio = conv.weight.numel() / sum(p.numel() for p in g.parameters())
        assert 0.9 * s < ratio <= s


def test_ghostnet_has_the_papers_imagenet_size():
    """Table 7: GhostNet 1.0x 5.2M params, 141M FLOPs (mult-adds); 1.3x 7.3M, 226M."""
    for variant, params, macs in (("ghostnet_100", 5.2e6, 141e6), ("ghostnet_130", 7.3e6, 226e6)):
        ours = paper_count(KEY, {"network": variant}, (3, 224, 224))
        assert abs(ours.params_count - params) / params < 0.05
        assert abs(ours.macs - macs) / macs < 0.05


def test_ghost_task_network_halves_the_baseline_and_trains(smoke_harness):
    ctx = smoke_harness.context(0)
    base = ctx.build_baseline()
    ghost = REGISTRY.create(KEY).build(ctx)
    convs = [m for m in ghost.modules() if isinstance(m, GhostModule)]
    assert len(convs) == len([m for m in base.modules() if isinstance(m, nn.Conv2d)])
    conv_w = lambda m: sum(p.numel() for n, p in m.named_parameters() if "fc" not in n and p.dim() == 4)  # noqa: E731
    assert 1.7 < conv_w(base) / conv_w(ghost) <= 2.0
    forward_and_one_step(ghost, 1, (8, 8), 10)


def test_replacement_keeps_the_layer_shape():
    net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.Sequential(nn.Conv2d(8, 8, 3, padding=1)))
    ghost_convolutions(net)
    x = torch.randn(1, 3, 16, 16)
    assert net(x).shape == (1, 8, 8, 8) and isinstance(net[1][0], GhostModule)
