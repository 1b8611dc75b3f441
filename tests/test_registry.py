"""Registry rules: one key per method, keys are BibTeX-style, lookups fail clearly."""
from __future__ import annotations

import pytest

from mcbench.methods.protocols import CompactMethod, Method
from mcbench.methods.registry import FAMILIES, REGISTRY, Registry, UnknownMethodError


def test_first_methods_registered_one_per_family():
    families = {REGISTRY.get(k).family for k in REGISTRY.keys()}
    assert {"distillation", "pruning", "quantization", "binarization", "compact"} <= families


def test_key_is_class_name_and_file_stem():
    for entry in REGISTRY:
        assert entry.cls.__name__ == entry.key
        assert entry.module.split(".")[-1] == entry.key
        assert entry.module.split(".")[2] == entry.family  # mcbench.methods.<family>.<key>


def test_duplicate_key_raises():
    r = Registry()
    r.add("smith2020thing", "compact", CompactMethod)
    with pytest.raises(ValueError, match="registered twice"):
        r.add("smith2020thing", "compact", CompactMethod)


@pytest.mark.parametrize("bad", ["Smith2020Thing", "thing", "smith_2020", "2020smith"])
def test_invalid_key_raises(bad):
    with pytest.raises(ValueError, match="BibTeX-style key"):
        Registry().add(bad, "compact", CompactMethod)


def test_unknown_family_raises():
    with pytest.raises(ValueError, match="unknown family"):
        Registry().add("smith2020thing", "magic", CompactMethod)
    assert "survey" not in FAMILIES  # surveys are catalog-only, never registered


def test_unknown_key_names_key_and_suggests():
    with pytest.raises(UnknownMethodError) as e:
        REGISTRY.get("hinton2015distiling")
    assert "hinton2015distiling" in str(e.value) and "hinton2015distilling" in str(e.value)


def test_unknown_config_option_raises():
    with pytest.raises(ValueError, match="unknown config option"):
        REGISTRY.create("hinton2015distilling", temprature=3)


@pytest.mark.parametrize("key", REGISTRY.keys())
def test_every_method_has_typed_config_and_docstring(key):
    entry = REGISTRY.get(key)
    method = entry.cls()
    assert isinstance(method, Method)
    assert isinstance(method.config_dict(), dict)
    doc = entry.cls.__module__ and __import__(entry.module, fromlist=["x"]).__doc__
    for needle in (key, "Implements", "Real:", "Simulated:", "Deviations:"):
        assert needle in doc, f"{entry.module} docstring lacks {needle!r}"
