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


def test_counts_scaled_from_one_sample_equal_the_whole_batch_on_a_padded_sparse_conv():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.mul_((torch.rand_like(conv.weight) > 0.6).float())
    x = torch.relu(torch.randn(5, 3, 9, 9))
    ops = nonzero_macs(conv, x)
    f = lambda a, w: nn.functional.conv2d(a, w, stride=2, padding=1).sum().item()  # noqa: E731
    nz_w = (conv.weight != 0).float()
    assert ops["macs_dense"] == f(torch.ones_like(x), torch.ones_like(conv.weight))   # padding not counted
    assert ops["macs_nonzero_weights"] == f(torch.ones_like(x), nz_w) < ops["macs_dense"]
    assert ops["macs_nonzero_weights_and_inputs"] == f((x != 0).float(), nz_w) < ops["macs_nonzero_weights"]
    assert "macs_nonzero_weights_and_inputs" not in nonzero_macs(conv, x, inputs=False)
