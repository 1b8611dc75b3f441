"""theis2018faster: the Fisher pruning signal against a per-example hand computation; FLOP-aware choice."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mcbench.benchmarks.archs import SmallCNN
from mcbench.methods.pruning._physical import find_chains
from mcbench.methods.pruning.theis2018faster import FisherSignal, map_sizes, pick_one, saved_macs
from mcbench.methods.registry import REGISTRY


def _model(seed=0):
    torch.manual_seed(seed)
    return SmallCNN(1, 3, (4, 6)).train()


def test_registered():
    assert "theis2018faster" in REGISTRY.keys()


def test_fisher_signal_matches_per_example_gradients():
    m = _model()
    x, y = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 1, 0])
    chains = find_chains(m, x[:1])
    m.eval()                                        # fixed BN statistics: examples are independent
    sig = FisherSignal(m, chains)
    F.cross_entropy(m(x), y).backward()
    got = sig.delta()
    sig.remove()
    hand = {n: torch.zeros(c, dtype=torch.float64) for n, c in (("stage1.0", 4), ("stage2.0", 6))}
    for i in range(5):
        acts = {}
        hs = [m.stage1[1].register_forward_hook(lambda mod, a, o: acts.__setitem__("stage1.0", o)),
              m.stage2[1].register_forward_hook(lambda mod, a, o: acts.__setitem__("stage2.0", o))]
        out = m(x[i:i + 1])
        for h in hs:
            h.remove()
        grads = torch.autograd.grad(F.cross_entropy(out, y[i:i + 1]), [acts["stage1.0"], acts["stage2.0"]])
        for (n, a), g in zip(acts.items(), grads):
            hand[n] += ((a * g).sum((2, 3)).double() ** 2).flatten()
    for n in hand:
        torch.testing.assert_close(got[n], hand[n] / (2 * 5), rtol=1e-4, atol=1e-10)


def test_flop_aware_choice_trades_signal_against_saved_macs():
    m = _model()
    chains = find_chains(m, torch.randn(1, 1, 8, 8))
    sizes = map_sizes(m, chains, torch.randn(1, 1, 8, 8))
    keep = {"stage1.0": torch.ones(4, dtype=torch.bool), "stage2.0": torch.ones(6, dtype=torch.bool)}
    saved = saved_macs(m, chains, keep, sizes)
    # stage1 channel: 1*9*64 (its row on 8x8) + 6*9*16 (stage2 reads it on 4x4); stage2: 4*9*16 + 3 (fc)
    assert saved == {"stage1.0": 1 * 9 * 64 + 6 * 9 * 16, "stage2.0": 4 * 9 * 16 + 3}
    delta = {"stage1.0": torch.tensor([5.0, 4.0, 6.0, 5.0]), "stage2.0": torch.tensor([3.0, 1.0, 2.0, 9.0, 9.0, 9.0])}
    assert pick_one(delta, saved, keep, beta=0.0) == ("stage2.0", 1)          # smallest signal
    assert pick_one(delta, saved, keep, beta=5.0) == ("stage1.0", 1)          # costly layer, lowest signal in it
    keep["stage2.0"][:] = False
    keep["stage2.0"][4] = True
    assert pick_one(delta, saved, keep, beta=0.0)[0] == "stage1.0"            # a layer keeps its last map
