"""chollet2016xception: Figure 5's network has Table 3's parameters; separable convs; the task version trains."""
from __future__ import annotations

import torch
from torch import nn

from compact_checks import forward_and_one_step, paper_count, task_model
from mcbench.methods.compact.chollet2016xception import SeparableConv, Xception

KEY = "chollet2016xception"


def test_paper_configuration_has_table_3s_parameter_count_exactly():
    """Table 3: Xception has 22,855,952 parameters (timm's legacy_xception, the Keras port, too)."""
    import timm

    ours = paper_count(KEY, {"width_multiplier": 1.0, "middle_repeats": 8, "stem": "paper"}, (3, 299, 299))
    assert ours.params_count == 22_855_952
    with torch.device("meta"):
        assert sum(p.numel() for p in timm.create_model("legacy_xception").parameters()) == 22_855_952


def test_paper_configuration_ends_on_a_10x10_map_of_2048_channels():
    with torch.device("meta"):
        m = Xception(1000, 3, 1.0, 8, "paper")
        x = torch.empty(1, 3, 299, 299)
        feats = m.exit(m.middle(m.entry(m.entry_stem(x))))
    assert feats.shape == (1, 2048, 10, 10)


def test_separable_conv_is_depthwise_then_pointwise_without_nonlinearity():
    sep = SeparableConv(16, 32)
    dw, pw = sep[0], sep[1]
    assert dw.groups == 16 and dw.kernel_size == (3, 3) and pw.kernel_size == (1, 1)
    assert not any(isinstance(m, nn.ReLU) for m in sep)
    # linear in its input before BN: conv(a x + b y) = a conv(x) + b conv(y)
    x, y = torch.randn(1, 16, 6, 6), torch.randn(1, 16, 6, 6)
    lin = lambda t: pw(dw(t))  # noqa: E731
    assert torch.allclose(lin(2 * x - y), 2 * lin(x) - lin(y), atol=1e-5)
    # parameters: 9 * 16 + 16 * 32 vs 9 * 16 * 32 for a full 3x3 conv
    assert dw.weight.numel() + pw.weight.numel() == 9 * 16 + 16 * 32


def test_task_network_forward_and_training_step():
    forward_and_one_step(task_model(KEY, 1, (8, 8), 10), 1, (8, 8), 10)
    forward_and_one_step(task_model(KEY, 1, (28, 28), 10), 1, (28, 28), 10)
