"""Text templates written by ``mcbench new-method`` (see :mod:`mcbench.catalog.scaffold`).

``string.Template`` keeps the generated Python readable here: ``$key``, ``$family``, ``$base``.
"""
from __future__ import annotations

from string import Template

# family -> the protocol base class in methods/protocols.py
FAMILY_BASES = {
    "distillation": "DistillationMethod",
    "pruning": "PruningMethod",
    "quantization": "QuantizationMethod",
    "binarization": "BinarizationMethod",
    "compact": "CompactMethod",
    "acceleration": "AccelerationMethod",
}

# --------------------------------------------------------------------------- methods/<family>/<key>.py
_METHOD = Template('''\
"""TODO: exact title of the paper.

TODO: Surname, Surname, Surname ($year), arXiv:TODO. Key: $key.
Implements: TODO: the paper's defining equation, each symbol tied to a Config field.
Real: TODO.  Simulated: TODO.
Deviations: TODO (or "none").
"""
from __future__ import annotations

from dataclasses import dataclass

$imports
from mcbench.methods.registry import register


@register(family="$family")
class $key($base):
    @dataclass
    class Config:
        pass  # TODO: the paper's hyperparameters, with the paper's defaults
$body''')

_BODIES = {
    "distillation": '''
    def loss(self, student: ModelOutput, targets: torch.Tensor, teacher: ModelOutput | None) -> torch.Tensor:
        raise NotImplementedError("$key.loss: fill in the paper's loss")
''',
    "pruning": '''
    structured = False  # TODO: True if the paper removes whole channels (then they are removed for real)

    def importance(self, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("$key.importance: fill in the paper's criterion")

    def sparsity_at(self, step: int, total_steps: int) -> float:
        raise NotImplementedError("$key.sparsity_at: fill in the paper's schedule")

    def finalize(self, model: nn.Module, masks: dict[str, torch.Tensor]) -> Compressed:
        raise NotImplementedError("$key.finalize: fill in the deployable model")
''',
    "quantization": '''
    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        raise NotImplementedError("$key.prepare: fill in observers / fake-quant")

    def convert(self, model: nn.Module, ctx: MethodContext) -> Compressed:
        raise NotImplementedError("$key.convert: fill in the deployable model")
''',
    "compact": '''
    def build(self, ctx: MethodContext) -> nn.Module:
        raise NotImplementedError("$key.build: fill in the architecture")
''',
}
_BODIES["binarization"] = _BODIES["quantization"]
_BODIES["acceleration"] = '''
    real = False  # TODO: True only if the new operator runs as a real kernel (then latency shows it)
    note = "TODO: what runs for real and what is simulated"

    # Implement ONE of: transform (replace layers of the trained baseline, then fine-tune) or
    # build (a model made of the paper's operator, trained from scratch); delete the other.
    def transform(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        raise NotImplementedError("$key.transform: fill in the layer replacement (or write build(ctx) instead)")
'''

_TORCH = {"distillation": "import torch", "pruning": "import torch\nfrom torch import nn"}
_PROTOCOLS = {
    "distillation": "DistillationMethod, ModelOutput",
    "pruning": "Compressed, PruningMethod",
    "quantization": "Compressed, MethodContext, QuantizationMethod",
    "binarization": "BinarizationMethod, Compressed, MethodContext",
    "compact": "CompactMethod, MethodContext",
    "acceleration": "AccelerationMethod, MethodContext",
}


def method_file(key: str, family: str, year: str) -> str:
    body = Template(_BODIES[family]).substitute(key=key, family=family)
    return _METHOD.substitute(key=key, family=family, year=year, base=FAMILY_BASES[family],
                              imports=_method_imports(family), body=body)


def _method_imports(family: str) -> str:
    torch_line = _TORCH.get(family, "from torch import nn")
    return f"{torch_line}\n\nfrom mcbench.methods.protocols import {_PROTOCOLS[family]}"


# --------------------------------------------------------------------------- catalog/papers/<key>.yaml
_RECORD = Template('''\
schema_version: 1
key: $key
family: $family
tags: []                           # e.g. [logit-matching, soft-targets]
summary: >-
  TODO: two or three sentences, in our own words: what the method does and why it compresses.
status: implemented
reason: null
venue_note: null
reading_list: []                   # - {file: <reading-list file>, as_listed: "<the line as listed>"}
discrepancies: []
claims: []                         # the paper's headline numbers, e.g.:
#  - metric: top1_acc_delta
#    value: -0.5
#    unit: "pp"
#    dataset: ImageNet
#    model: "ResNet-50"
#    baseline: "ResNet-50 fp32: 76.1%"
#    where: "Table 2"
#    compare: {measure: acc_delta_pp, expected: -0.5, tolerance: 1.0}
''')


def record_file(key: str, family: str) -> str:
    return _RECORD.substitute(key=key, family=family)


# --------------------------------------------------------------------------- catalog/papers/<key>.bib
_BIB = Template('''\
@misc{$key,
  title         = {TODO: exact title of the paper},
  author        = {TODO: Last, First and Last, First},
  year          = {$year},
  eprint        = {TODO: arXiv id (add doi if one exists; @inproceedings or @article if published)},
  archiveprefix = {arXiv}
}
''')


def bib_entry(key: str, year: str) -> str:
    return _BIB.substitute(key=key, year=year)


# --------------------------------------------------------------------------- tests/methods/test_<key>.py
_TEST = Template('''\
"""$key: the property that defines the paper's method."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mcbench.methods.protocols import $protocols
from mcbench.methods.registry import REGISTRY

KEY = "$key"
TODO = (f"tests/methods/test_{KEY}.py: replace this line with an assertion of the paper's defining property "
        "($hint)")


def _context(model: nn.Module) -> MethodContext:
    """A tiny context: 1x4x4 inputs, 4 classes, a train_fn that does nothing."""
    return MethodContext(
        num_classes=4, in_chans=1, input_size=(4, 4), epochs_scratch=1, epochs_finetune=1,
        train_fn=lambda m, **kw: TrainReport(best_epoch=0, val_top1_acc_pct=0.0, epochs_run=0),
        build_student=lambda: model, build_baseline=lambda: model, load_baseline=lambda: model,
        load_teacher=lambda: model,
        calibration_batches=lambda: [torch.randn(8, 1, 4, 4)],
    )


def test_registered() -> None:
    assert REGISTRY.get(KEY).family == "$family"


def test_defining_property() -> None:
    torch.manual_seed(0)
    method = REGISTRY.create(KEY)
$body
    pytest.fail(TODO)
''')

_TEST_BODIES = {
    "distillation": '''\
    student, teacher = ModelOutput(torch.randn(8, 4)), ModelOutput(torch.randn(8, 4))
    loss = method.loss(student, torch.randint(0, 4, (8,)), teacher)
    assert loss.ndim == 0 and torch.isfinite(loss)''',
    "pruning": '''\
    weight = torch.randn(8, 4, 3, 3)
    scores = method.importance(weight)
    assert scores.shape[0] == weight.shape[0]
    assert 0.0 <= method.sparsity_at(0, 100) <= method.sparsity_at(100, 100) <= 1.0''',
    "quantization": '''\
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    ctx = _context(model)
    out = method.convert(method.prepare(model, ctx), ctx)
    assert out.model(ctx.example_input(2)).shape == (2, 4)''',
    "compact": '''\
    ctx = _context(nn.Identity())
    model = method.build(ctx)
    assert model(ctx.example_input(2)).shape == (2, ctx.num_classes)''',
}
_TEST_BODIES["binarization"] = _TEST_BODIES["quantization"]
_TEST_BODIES["acceleration"] = '''\
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(64, 4)).eval()
    ctx = _context(model)
    x = ctx.example_input(2)
    fast = method.build(ctx) if type(method).build is not AccelerationMethod.build else method.transform(model, ctx)
    assert fast(x).shape == (2, 4)'''

_HINTS = {
    "distillation": "e.g. the loss is smallest when the student's outputs match the teacher's",
    "pruning": "e.g. the criterion ranks weights as the paper's equation does; the schedule ends at the target",
    "quantization": "e.g. each converted weight tensor takes at most 2**bits distinct values",
    "binarization": "e.g. each converted weight tensor takes two values, +a and -a",
    "compact": "e.g. the parameter count matches the paper's formula for this architecture",
    "acceleration": "e.g. the replaced layer computes what the original did, with the paper's operation count",
}


def test_file(key: str, family: str) -> str:
    protocols = {"distillation": "MethodContext, ModelOutput, TrainReport",
                 "acceleration": "AccelerationMethod, MethodContext, TrainReport"}.get(family, "MethodContext, TrainReport")
    return _TEST.substitute(key=key, family=family, body=_TEST_BODIES[family], hint=_HINTS[family],
                            protocols=protocols)
