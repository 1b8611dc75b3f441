"""Operation counts where the FLOP counter is blind (methods/ops.py)."""
from __future__ import annotations

import torch
from torch import nn

from mcbench.methods.ops import nonzero_macs, tally


def test_nonzero_macs_on_a_tiny_sparse_mlp_by_hand():
    lin1, lin2 = nn.Linear(3, 2, bias=False), nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]))  # 3 nonzeros of 6
        lin2.weight.copy_(torch.tensor([[0.0, 5.0]]))
    model = nn.Sequential(lin1, nn.ReLU(), lin2)
    x = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])  # first sample: the only input of col 3 is zero
    ops = tally(model, x, nonzero_macs)
    assert ops["macs_dense"] == 2 * (6 + 2)
    assert ops["macs_nonzero_weights"] == 2 * (3 + 1)
    # sample 0: layer1 1 MAC (w[0,0]*x0), hidden [1, 0] -> layer2 0 MACs (w[0,1]*h1 with h1=0)
    # sample 1: layer1 3 MACs, hidden [3, 3] -> layer2 1 MAC
    assert ops["macs_nonzero_weights_and_inputs"] == 1 + 0 + 3 + 1


def test_conv_nonzero_macs_match_flop_counter_when_dense():
    from torch.utils.flop_counter import FlopCounterMode

    conv = nn.Conv2d(2, 3, 3, padding=0, bias=False)
    x = torch.randn(4, 2, 5, 5).abs() + 0.1
    ops = tally(conv, x, nonzero_macs)
    with FlopCounterMode(display=False) as fc:
        conv(x)
    assert ops["macs_dense"] == fc.get_total_flops() / 2 
    assert ops["macs_nonzero_weights"] == ops["macs_dense"]


def test_tally_removes_its_hooks():
    model = nn.Sequential(nn.Linear(2, 2))
    tally(model, torch.ones(1, 2), nonzero_macs)
    assert not model[0]._forward_hooks
