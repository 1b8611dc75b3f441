"""yu2017nisp: FRL scores by Inf-FS, propagated backwards through |W| (and BN's factor)."""
from __future__ import annotations

import torch
from torch import nn

from mcbench.benchmarks.archs import SmallCNN
from mcbench.methods.protocols import MethodContext
from mcbench.methods.pruning.yu2017nisp import inf_fs, nisp_prune, nisp_scores
from mcbench.methods.registry import REGISTRY


def _model(seed=0):
    torch.manual_seed(seed)
    m = SmallCNN(1, 3, (4, 5, 6))
    for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def _batches():
    g = torch.Generator().manual_seed(3)
    return [torch.randn(32, 1, 8, 8, generator=g) for _ in range(2)]


def test_registered():
    assert "yu2017nisp" in REGISTRY.keys()


def test_scores_are_propagated_by_absolute_weights_and_bn_factors():
    m = _model()
    s = nisp_scores(m, torch.randn(1, 1, 8, 8), _batches())
    assert set(s) == {"stage1.0", "stage2.0", "stage3.0"}
    bn3 = m.stage3[1]
    factor = (bn3.weight / torch.sqrt(bn3.running_var + bn3.eps)).abs()
    hand = m.stage3[0].weight.detach().abs().sum((2, 3)).T @ (s["stage3.0"] * factor)   # Eq. 9 by hand
    torch.testing.assert_close(s["stage2.0"], hand.detach())
    frl = []
    h = m.fc.register_forward_hook(lambda mod, i, o: frl.append(i[0]))
    with torch.no_grad():
        for xb in _batches():
            m(xb)
    h.remove()
    torch.testing.assert_close(s["stage3.0"], inf_fs(torch.cat(frl)))


def test_a_neuron_that_reaches_nothing_scores_zero_and_is_pruned():
    m = _model()
    with torch.no_grad():
        m.stage3[0].weight[:, 2] = 0                   # stage2's channel 2 feeds nothing downstream
    s = nisp_scores(m, torch.randn(1, 1, 8, 8), _batches())
    assert s["stage2.0"][2] == 0 and (s["stage2.0"][[0, 1, 3, 4]] > 0).all()
    ctx = MethodContext(num_classes=3, in_chans=1, input_size=(8, 8), epochs_scratch=0, epochs_finetune=0,
                        train_fn=None, build_student=None, build_baseline=None, load_baseline=lambda: m,
                        load_teacher=None, calibration_batches=_batches, seed=0)
    small = nisp_prune(ctx, m, 0.4)
    assert [c.out_channels for c in small.modules() if isinstance(c, nn.Conv2d)] == [3, 3, 4]
    assert (small.stage3[0].weight.detach().abs().sum((0, 2, 3)) > 0).all()   # the dead-end channel went
    assert small(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_inf_fs_ranks_an_informative_feature_above_a_duplicate_constant_one():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=g)
    x[:, 3] = 0.01 * torch.randn(200, generator=g)    # nearly constant: low variance, low score
    sc = inf_fs(x)
    assert sc[3] == sc.min()
