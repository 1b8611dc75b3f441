"""howard2017mobilenets: depthwise separable MobileNet with a width multiplier."""
from __future__ import annotations

import torch
from torch import nn

from mcbench.benchmarks.complexity import build_paper_config, count, paper_context
from mcbench.methods.compact.howard2017mobilenets import BLOCKS, MobileNetV1, howard2017mobilenets


def test_imagenet_configuration_has_the_papers_size():
    """Table 8: MobileNet 1.0-224 has 4.2M parameters and 569M mult-adds (within 5%)."""
    ours = count(build_paper_config("howard2017mobilenets", {"width_multiplier": 1.0, "stride1_layers": 0}, 3,
                                    (224, 224), 1000), 3, (224, 224))
    assert abs(ours.params_count - 4.2e6) / 4.2e6 < 0.05
    assert abs(ours.macs - 569e6) / 569e6 < 0.05


def test_width_multiplier_scales_parameters_roughly_quadratically():
    """Section 3.3: cost and parameters fall by about alpha^2 (the classifier's input row falls by alpha)."""
    p = {a: count(build_paper_config("howard2017mobilenets", {"width_multiplier": a, "stride1_layers": 0}, 3,
                                     (224, 224), 1000), 3, (224, 224)) for a in (1.0, 0.5)}
    body = {a: p[a].params_count - (int(1024 * a) + 1) * 1000 for a in p}  # without the 1000-way classifier
    assert 3.6 < body[1.0] / body[0.5] < 4.1
    assert 3.6 < p[1.0].macs / p[0.5].macs < 4.1


def test_blocks_are_depthwise_separable_as_table_1():
    m = MobileNetV1(1000, 3, 1.0)
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert len(convs) == 1 + 2 * len(BLOCKS) == 27
    depthwise = convs[1::2]
    assert all(c.groups == c.in_channels == c.out_channels and c.kernel_size == (3, 3) for c in depthwise)
    assert all(c.kernel_size == (1, 1) and c.groups == 1 for c in convs[2::2])
    assert [c.stride[0] for c in convs[0:1] + depthwise].count(2) == 5


def test_forward_on_the_task_input():
    ctx = paper_context(in_chans=1, input_size=(28, 28), num_classes=10)  # build(ctx) only reads shapes
    model = howard2017mobilenets().build(ctx)
    feats = model.blocks(model.stem(torch.randn(2, 1, 28, 28)))
    assert feats.shape[-2:] == (4, 4)  # stride1_layers=2: total stride 8, not 32
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
