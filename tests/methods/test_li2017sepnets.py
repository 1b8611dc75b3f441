"""li2017sepnets: k x k patterns binarized (two values per filter), 1x1 kept float, pattern residual blocks,
the encoded 1-bit file round-trips bit-exactly, fine-tuning leaves the patterns fixed."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compact_checks import forward_and_one_step, task_model
from mcbench.benchmarks.complexity import paper_context
from mcbench.methods.encoding import container
from mcbench.methods.compact.li2017sepnets import (PatternConv2d, PatternResidualBlock, SEPNet, binarize_patterns,
                                                   encoding_plan, pattern_layers, storage_bits)
from mcbench.methods.protocols import TrainReport
from mcbench.methods.registry import REGISTRY

KEY = "li2017sepnets"


def _trained_like(model: nn.Module) -> nn.Module:
    """Non-trivial weights and BN statistics, as after training."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
    return model.eval()


def test_binarized_kxk_filters_take_exactly_two_values_per_filter_scale():
    torch.manual_seed(0)
    conv = PatternConv2d(8, 6, 3, padding=1, bias=False)
    w = conv.weight.detach().clone()
    w[0, 0, 0, 0] = 0.0
    conv.weight.data.copy_(w)
    conv.binarize()
    eff = conv.effective_weight()
    for f in range(6):
        alpha = w[f].abs().mean()                              # ||W_f||_1 / n
        assert set(eff[f].unique().tolist()) == {alpha.item(), -alpha.item()}
        assert torch.equal(eff[f] > 0, w[f] >= 0)              # the sign pattern of the trained filter (0 -> +)
    assert set(conv.weight.unique().tolist()) == {-1.0, 1.0} and not conv.weight.requires_grad
    x = torch.randn(2, 8, 5, 5)
    assert torch.allclose(conv(x), F.conv2d(x, conv.alpha.view(-1, 1, 1, 1) * torch.sign(w + (w == 0)), padding=1))


def test_only_kxk_convolutions_are_binarized():
    model = _trained_like(SEPNet(10, 1, (8, 16, 32)))
    fp_before = {n: m.weight.detach().clone() for n, m in model.named_modules()
                 if isinstance(m, (nn.Conv2d, nn.Linear)) and not isinstance(m, PatternConv2d)}
    binarize_patterns(model)
    patterns = pattern_layers(model)
    assert len(patterns) == 3 and all(m.kernel_size == (3, 3) for _, m in patterns)
    for name, m in model.named_modules():
        if name in fp_before:                                  # stem, 1x1 transforms, classifier: untouched floats
            assert torch.equal(m.weight, fp_before[name])
            if m.weight.dim() == 4 and m.kernel_size == (1, 1):
                assert m.weight.unique().numel() > 2
    assert sum(n.endswith(".transform") for n in fp_before) == 3 and "stem.0" in fp_before and "fc" in fp_before


def test_pattern_residual_block_adds_the_1x1_transform_to_the_pattern_features():
    torch.manual_seed(0)
    block = _trained_like(PatternResidualBlock(8, 16, stride=2))
    x = torch.randn(2, 8, 9, 9)
    y = block(x)
    assert y.shape == (2, 16, 5, 5)
    assert block.pattern.kernel_size == (3, 3) and block.transform.kernel_size == (1, 1)
    assert block.pattern.stride == block.transform.stride == (2, 2)
    want = F.relu(block.pattern_bn(block.pattern(x)) + block.transform_bn(block.transform(x)))
    assert torch.equal(y, want)
    assert not torch.allclose(y, F.relu(block.pattern_bn(block.pattern(x))))   # the 1x1 branch contributes
    same = PatternResidualBlock(16, 16).eval()
    assert same(torch.randn(1, 16, 6, 6)).shape == (1, 16, 6, 6)


def test_encoded_bytes_round_trip_bit_exactly_at_one_bit_per_pattern_weight():
    model = binarize_patterns(_trained_like(SEPNet(10, 1, (8, 16, 32))))
    blob = container.encode_model(model, encoding_plan(model))
    fresh = binarize_patterns(SEPNet(10, 1, (8, 16, 32)))
    fresh.load_state_dict(container.decode_state(blob), strict=True)
    fresh.eval()
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k
    assert container.encode_model(fresh, encoding_plan(fresh)) == blob       # re-encoding: the same bytes
    x = torch.randn(4, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))                               # same logits, so same accuracy
    sizes = container.payload_sizes(blob)
    for name, m in pattern_layers(model):
        n = m.weight.numel()
        assert sizes[f"{name}.weight"] == 4 + 2 * 4 + (n + 7) // 8           # 2-entry codebook + 1 bit each
        assert sizes[f"{name}.alpha"] == 4 * m.out_channels                  # one float32 scale per filter
    assert 1.0 < storage_bits(model) < 32.0


class _StubTrain:
    """A few SGD steps on random data; records which parameters each call could train."""

    def __init__(self, ctx):
        self.ctx, self.calls = ctx, []

    def __call__(self, model, *, epochs, stage="train", **_):
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        self.calls.append((stage, trainable))
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
        g = torch.Generator().manual_seed(len(self.calls))
        model.train()
        for _ in range(3):
            x = torch.randn(16, self.ctx.in_chans, *self.ctx.input_size, generator=g)
            y = torch.randint(0, self.ctx.num_classes, (16,), generator=g)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return TrainReport(best_epoch=0, val_top1_acc_pct=0.0, epochs_run=epochs)


def test_apply_trains_full_precision_then_fine_tunes_with_the_patterns_fixed():
    ctx = dataclasses.replace(paper_context(1, (8, 8), 10), device=torch.device("cpu"), epochs_scratch=1,
                              epochs_finetune=1)
    stub = _StubTrain(ctx)
    ctx = dataclasses.replace(ctx, train_fn=stub)
    torch.manual_seed(0)
    out = REGISTRY.create(KEY, widths=(8, 16, 32)).apply(ctx)
    (s1, first), (s2, second) = stub.calls
    patterns = {f"{n}.weight" for n, _ in pattern_layers(out.model)}
    assert patterns <= first and not patterns & second and second == first - patterns
    for _, m in pattern_layers(out.model):
        assert set(m.weight.unique().tolist()) == {-1.0, 1.0}
    assert out.storage_real and not out.compute_real and out.encoded is not None
    decoded = out.encoded.decode(out.encoded.encode(out.model))
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(decoded(x), out.model(x))
    assert out.extra["bits_per_weight_quantized_layers"] == 1.0
    assert set(out.extra["full_precision_layers"]).isdisjoint(out.extra["pattern_layers"])


def test_task_network_forward_and_training_step():
    forward_and_one_step(task_model(KEY, 1, (8, 8), 10), 1, (8, 8), 10)


@pytest.mark.slow
def test_task_network_at_fmnist_size_trains():
    forward_and_one_step(task_model(KEY, 1, (28, 28), 10), 1, (28, 28), 10)
