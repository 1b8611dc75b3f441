"""luo2017thinet: greedy selection by the next layer's reconstruction error beats random selection."""
from __future__ import annotations

import torch
from torch import nn

from mcbench.benchmarks.archs import SmallCNN
from mcbench.methods.protocols import MethodContext
from mcbench.methods.pruning._layerview import layer_views
from mcbench.methods.pruning.he2017channel import flat_weight, patches, sample_positions
from mcbench.methods.pruning.luo2017thinet import (contributions, greedy_removal, ls_scales, removal_error,
                                                   thinet_prune)
from mcbench.methods.registry import REGISTRY


def _model(seed=0):
    torch.manual_seed(seed)
    m = SmallCNN(1, 3, (8, 12))
    for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
        bn.weight.data.uniform_(0.2, 2.0)
        bn.bias.data.uniform_(-0.2, 0.4)
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def _ctx(model):
    g = torch.Generator().manual_seed(7)
    batches = [torch.randn(16, 1, 8, 8, generator=g) for _ in range(3)]
    return MethodContext(num_classes=3, in_chans=1, input_size=(8, 8), epochs_scratch=0, epochs_finetune=0,
                         train_fn=None, build_student=None, build_baseline=None, load_baseline=lambda: model,
                         load_teacher=None, calibration_batches=lambda: batches, seed=0)


def _xhat(m):
    v = layer_views(m, torch.randn(1, 1, 8, 8), names=["stage2.0"], batches=_ctx(m).calibration_batches(),
                    activations=True)["stage2.0"]
    gen = torch.Generator().manual_seed(0)
    x = patches(v.inputs, v.module, sample_positions(v.inputs, v.module, 10, gen))
    return contributions(x, flat_weight(v.module), gen)


def test_registered():
    assert "luo2017thinet" in REGISTRY.keys()


def test_contributions_sum_to_the_sampled_output():
    m = _model()
    v = layer_views(m, torch.randn(1, 1, 8, 8), names=["stage2.0"], batches=_ctx(m).calibration_batches(),
                    activations=True)["stage2.0"]
    gen = torch.Generator().manual_seed(0)
    pos = sample_positions(v.inputs, v.module, 10, gen)
    x = patches(v.inputs, v.module, pos)
    o = torch.randint(12, (x.shape[0],), generator=torch.Generator().manual_seed(5))
    xh = contributions(x, flat_weight(v.module), torch.Generator().manual_seed(5))
    out = v.outputs.flatten(2)                                            # (B, n, HW)
    b = torch.arange(x.shape[0]) // 10
    y = out[b, o, pos.flatten()]
    torch.testing.assert_close(xh.sum(1).float(), y, rtol=1e-4, atol=1e-4)


def test_greedy_selection_beats_random_selection_on_the_reconstruction_error():
    xh = _xhat(_model())
    c = xh.shape[1]
    removed = greedy_removal(xh, c // 2)
    greedy = removal_error(xh, removed)
    gen = torch.Generator().manual_seed(1)
    randoms = [removal_error(xh, sorted(torch.randperm(c, generator=gen)[: c // 2].tolist())) for _ in range(20)]
    assert greedy < min(randoms)
    kept = [i for i in range(c) if i not in removed]
    y = xh.sum(1)
    plain = float(((y - xh[:, kept].sum(1)) ** 2).sum())
    assert abs(plain - greedy) < 1e-6 * max(1.0, greedy)                  # Eq. 5 is the error of keeping S
    scaled = float(((y - xh[:, kept] @ ls_scales(xh, kept)) ** 2).sum())
    assert scaled <= plain + 1e-9                                         # Eq. 6 can only lower it


def test_thinet_removes_the_channels_for_real():
    m = _model()
    small = thinet_prune(_ctx(m), m, 0.5)
    assert [c.out_channels for c in small.modules() if isinstance(c, nn.Conv2d)] == [4, 6]
    assert small.fc.in_features == 6
    assert small(torch.randn(2, 1, 8, 8)).shape == (2, 3)
