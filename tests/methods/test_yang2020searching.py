"""SLB (Yang et al. 2020): softmax over discrete values, temperature annealing, state BN, argmax deployment."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mcbench.benchmarks import archs
from mcbench.methods.quantization import yang2020searching as S
from mcbench.methods.registry import REGISTRY


def test_registered():
    assert REGISTRY.get("yang2020searching").family == "quantization"


def test_levels():
    assert S.levels(1).tolist() == [-1.0, 1.0]
    assert torch.allclose(S.levels(2), torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]))
    assert len(S.levels(4)) == 16


def test_relaxed_weight_and_its_gradient_by_hand():
    v = S.levels(2)
    a = torch.tensor([[0.0, 1.0, 2.0, 0.5]], requires_grad=True)
    tau = 0.5
    e = torch.exp(torch.tensor([0.0, 2.0, 4.0, 1.0]))            # exp(a / tau)
    p = e / e.sum()
    w = S.soft_weight(a, v, tau)
    assert w.item() == pytest.approx(float((p * v).sum()), abs=1e-6)
    w.sum().backward()                                              # dw/da_i = p_i (v_i - w) / tau
    assert torch.allclose(a.grad[0], p * (v - w.detach()) / tau, atol=1e-6)
    assert S.hard_weight(a.detach(), v).item() == pytest.approx(1 / 3)
    assert S.soft_weight(a.detach(), v, 1e-3).item() == pytest.approx(1 / 3, abs=1e-6)   # tau -> 0: the argmax


def test_temperature_is_annealed_from_start_to_end():
    assert S.temperature(0, 100, 1.0, 0.01) == pytest.approx(1.0)
    assert S.temperature(50, 100, 1.0, 0.01) == pytest.approx(0.1)
    assert S.temperature(100, 100, 1.0, 0.01) == pytest.approx(0.01)


def test_logits_start_at_the_level_nearest_the_normalised_weight():
    w = torch.tensor([0.5, -0.1, 0.2, 0.0])                        # / max|w| = [1, -0.2, 0.4, 0]
    v = S.levels(2)
    assert S.hard_weight(S.init_logits(w, v), v).tolist() == pytest.approx([1.0, -1 / 3, 1 / 3, -1 / 3])


def _net(bits=2):
    torch.manual_seed(0)
    base = archs.build(archs.ArchSpec("cnn", (4, 8, 8)), 1, 4, (8, 8))
    return S.search_model(base, bits), base


def test_state_bn_tracks_the_discrete_network_and_eval_uses_it():
    net, _ = _net()
    net.train()
    x = torch.randn(16, 1, 8, 8)
    net(x)
    conv = net.body.stage2[0]
    bn = net.body.stage2[1]
    assert isinstance(conv, S.SearchConv) and isinstance(bn, S.StateBN)
    inp = {}
    def grab(m, i, o):
        inp["hard" if m.hard else "soft"] = (i[0], o)

    h = conv.register_forward_hook(grab)
    bn_state0, bn_run0 = bn.state_mean.clone(), bn.running_mean.clone()
    net(x)
    h.remove()
    hard_out, soft_out = inp["hard"][1], inp["soft"][1]
    m = bn.momentum
    assert torch.allclose(bn.state_mean, (1 - m) * bn_state0 + m * hard_out.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_mean, (1 - m) * bn_run0 + m * soft_out.mean(dim=(0, 2, 3)), atol=1e-5)
    assert not torch.allclose(hard_out, soft_out)                   # the two passes really differ
    assert torch.equal(F.conv2d(inp["hard"][0], S.hard_weight(conv.logits, conv.values), None, 1, 1), hard_out)


def test_deployed_network_has_the_argmax_weights_and_computes_the_discrete_state():
    net, base = _net()
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for step in range(5):
        for m in net.modules():
            if isinstance(m, S.SearchConv):
                m.tau = S.temperature(step, 5, 1.0, 0.01)
        loss = F.cross_entropy(net(torch.randn(16, 1, 8, 8)), torch.randint(0, 4, (16,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    build = lambda: archs.build(archs.ArchSpec("cnn", (4, 8, 8)), 1, 4, (8, 8))  # noqa: E731
    deployed = S.deploy(net.eval(), build)
    x = torch.randn(5, 1, 8, 8)
    assert torch.allclose(deployed(x), net(x), atol=1e-5)
    for name in S.searched_layers(deployed):
        w = deployed.get_submodule(name).weight
        assert set(w.unique().tolist()) <= set(S.levels(2).tolist())
    assert len(S.searched_layers(deployed)) == 2                     # every conv but the first


def test_apply_searches_and_adds_the_ste_control():
    from test_registry_methods import Walk, _tiny_context
    torch.manual_seed(0)
    walk = Walk(out=None)
    out = REGISTRY.create("yang2020searching", weight_bits=1).apply(_tiny_context(walk))
    assert walk.trained == 2                                          # the search and the STE control
    assert set(out.controls) == {"ste"}
    w = out.model.stage2[0].weight
    assert set(w.unique().tolist()) <= {-1.0, 1.0}
    w_ste = out.controls["ste"].model.stage2[0].weight
    assert len(w_ste.unique()) <= 2
    x = torch.randn(3, 1, 8, 8)
    for c in (out, out.controls["ste"]):
        assert torch.equal(c.encoded.decode(c.encoded.encode(c.model))(x), c.model(x))
