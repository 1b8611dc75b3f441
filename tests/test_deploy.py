"""Deploy-form latency: the timed model is the deployable one (BN folded, frozen) and computes what was scored."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from mcbench.benchmarks import deploy
from mcbench.benchmarks.archs import build
from mcbench.benchmarks.tasks import TASKS


def _trained_like_cnn(seed: int = 0) -> nn.Module:
    """The task CNN with non-trivial BN statistics and affine values, so folding changes the weights."""
    torch.manual_seed(seed)
    model = build(TASKS["digits"].baseline, 1, 10, (8, 8))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("batch", [1, 16])
def test_deploy_form_gives_the_scored_models_outputs(batch):
    torch.set_num_threads(2)
    model = _trained_like_cnn()
    form = deploy.deploy(model, torch.randn(batch, 1, 8, 8), check_inputs=(torch.randn(batch, 1, 8, 8),))
    fresh = torch.randn(batch, 1, 8, 8)  # an input the check never saw
    with torch.inference_mode():
        ok, why = deploy.outputs_match(form.module(fresh), model(fresh))
    assert ok, why
    assert form.module is not model and form.path.startswith("fp32 bn-folded")
    assert not form.dropped, form.dropped


def test_bn_is_folded_in_the_timed_fp32_model():
    model = _trained_like_cnn()
    x = torch.randn(4, 1, 8, 8)
    # the counter sees BN both as modules and as TorchScript graph nodes (so the assertion below can fail)
    assert deploy.count_batchnorm(model) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert deploy.count_batchnorm(torch.jit.trace(model, x)) == 3
    assert deploy.count_batchnorm(deploy.fold_batchnorm(model)) == 0
    form = deploy.deploy(model, x)
    assert form.bn_left == 0 and deploy.count_batchnorm(form.module) == 0
    timed = form.module
    if isinstance(timed, torch.jit.ScriptModule):
        kinds = {n.kind() for n in timed.inlined_graph.nodes()}
        assert not kinds & set(deploy.BN_OPS)
        assert "aten::conv2d" in kinds or any("conv" in k for k in kinds)
    assert all(c > 0 for c in form.candidate_p50_ms.values())  # the faster form was chosen by timing


def test_channels_last_candidate_converts_its_input():
    model = _trained_like_cnn()
    wrapped = deploy.ChannelsLastInput(deploy.fold_batchnorm(model).to(memory_format=torch.channels_last))
    x = torch.randn(2, 1, 8, 8)
    with torch.inference_mode():
        assert deploy.outputs_match(wrapped(x), model(x))[0]


def test_int8_is_timed_as_converted_and_matches():
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    model = _trained_like_cnn()
    x = torch.randn(8, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (x,))
        with torch.no_grad():
            prepared(torch.randn(64, 1, 8, 8))
        int8 = convert_fx(prepared)
    assert deploy.is_quantized(int8) and not deploy.is_quantized(model)
    form = deploy.deploy(int8, x)
    assert form.path.startswith("int8 ")
    with torch.inference_mode():
        y = torch.randn(8, 1, 8, 8)
        assert deploy.outputs_match(form.module(y), int8(y))[0]


class _Unreproducible(nn.Module):
    """Outputs change from call to call, so no deploy candidate can reproduce the scored outputs."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) + torch.rand(x.shape[0], 10)


def test_mismatch_falls_back_to_the_eager_model_and_says_why():
    model = _Unreproducible().eval()
    deployed, path = deploy.to_deploy_form(model, torch.randn(4, 1, 8, 8))
    assert deployed is model
    assert path.startswith("fp32 eager (fallback")
    form = deploy.deploy(model, torch.randn(4, 1, 8, 8))
    candidates = [d for d in form.dropped if not d.startswith("bn-fold")]  # fx cannot trace torch.rand(Proxy)
    assert len(candidates) == 5 and all("output mismatch" in d for d in candidates)  # 4 frozen + the eager graph


def test_outputs_match_tolerance_is_relative_to_the_output_scale():
    ref = torch.tensor([100.0, -50.0])
    assert deploy.outputs_match(ref + 5e-3, ref)[0]       # 5e-3 < 1e-4 x 100 + rtol
    assert not deploy.outputs_match(ref + 0.1, ref)[0]
    assert not deploy.outputs_match(ref[:1], ref)[0]
