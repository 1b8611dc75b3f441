"""iandola2016squeezenet: Fire modules, Table 1's size, and the <0.5 MB Deep Compression figure."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from compact_checks import forward_and_one_step, paper_count, task_model
from mcbench.methods.compact.iandola2016squeezenet import Fire, SqueezeNet

KEY = "iandola2016squeezenet"
PAPER = {"width_multiplier": 1.0, "stem": "paper"}


def test_paper_configuration_has_table_1s_parameters_and_is_torchvisions_v1_0():
    """Table 1: 1,248,424 parameters; torchvision's squeezenet1_0 is the same network, layer by layer."""
    ours = SqueezeNet(1000, 3, 1.0, "paper")
    ref = torchvision.models.squeezenet1_0(weights=None)
    assert sum(p.numel() for p in ours.parameters()) == 1_248_424
    assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
    x = torch.randn(1, 3, 224, 224)
    assert ours.features(x).shape == ref.features(x).shape == (1, 512, 13, 13)


def test_fifty_times_fewer_parameters_than_alexnet():
    """Abstract and Table 2: AlexNet has 50x the parameters (240 MB vs 4.8 MB of 32-bit weights)."""
    with torch.device("meta"):
        alexnet = sum(p.numel() for p in torchvision.models.alexnet(weights=None).parameters())
    ours = paper_count(KEY, PAPER, (3, 224, 224)).params_count
    assert 45 < alexnet / ours < 55
    assert ours * 4 / 2**20 == pytest.approx(4.8, abs=0.05)  # "4.8MB" uncompressed (Table 2) is MiB


def test_fire_module_concatenates_1x1_and_3x3_expand_outputs():
    fire = Fire(96, 16, 64, 64)
    out = fire(torch.randn(2, 96, 13, 13))
    assert out.shape == (2, 128, 13, 13) and (out >= 0).all()
    assert fire.squeeze.kernel_size == (1, 1) and fire.expand3x3.kernel_size == (3, 3)
    # strategy 2: the 3x3 filters see only s1x1 = 16 input channels, not 96
    assert fire.expand3x3.in_channels == 16


@pytest.mark.slow
def test_deep_compression_of_squeezenet_is_under_half_a_megabyte():
    """Table 2: 33% of weights kept, 6-bit shared weights -> 0.47 MB. Our encoder on the paper-sized net
    (random weights pruned by magnitude and clustered; no retraining, which does not change the size)."""
    from mcbench.methods.encoding import container
    from mcbench.methods.pruning.han2015deep import linear_kmeans

    torch.manual_seed(0)
    model = SqueezeNet(1000, 3, 1.0, "paper")
    plan = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight.detach().numpy().ravel()
            keep = np.abs(w) >= np.quantile(np.abs(w), 0.67)
            centroids, assign = linear_kmeans(w[keep], 63)
            q = np.zeros_like(w)
            q[keep] = centroids[assign]
            m.weight.data = torch.from_numpy(q.reshape(m.weight.shape))
            plan[f"{name}.weight"] = container.SparseCodebook(bits=6, index_bits=4)
    data = container.encode_model(model, plan)  # biases stay raw float32
    assert len(data) < 0.5e6, len(data)
    dense = sum(p.numel() for p in model.parameters()) * 4
    assert dense / len(data) > 9  # 4.8 MB -> < 0.5 MB


@pytest.mark.parametrize("size", [(8, 8), (28, 28)])
def test_task_network_forward_and_training_step(size):
    forward_and_one_step(task_model(KEY, 1, size, 10), 1, size, 10)
