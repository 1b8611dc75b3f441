"""The house rule: a method's registry key is its paper's BibTeX key, and the two agree both ways."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from mcbench.catalog import Catalog, CatalogError, check_registry, load_catalog
from mcbench.methods.registry import REGISTRY, Registry

FIXTURES = Path(__file__).parent / "fixtures" / "catalog"


# --------------------------------------------------------------------------- the real registry
@pytest.fixture(scope="module")
def catalog() -> Catalog:
    try:
        return load_catalog()
    except CatalogError as exc:
        pytest.fail("the catalog does not validate:\n" + "\n".join(exc.problems), pytrace=False)


@pytest.mark.parametrize("key", REGISTRY.keys())
def test_every_registered_method_has_an_implemented_entry(catalog: Catalog, key: str) -> None:
    entry = REGISTRY.get(key)
    assert key in catalog.papers, f"{entry.source_file}: method {key!r} has no catalog entry"
    paper = catalog.papers[key]
    assert paper.status == "implemented", f"{paper.yaml_file}: registered, but status is {paper.status!r}"
    assert paper.family == entry.family
    assert Path(entry.source_file).stem == key and entry.cls.__name__ == key


def test_every_implemented_entry_has_a_method(catalog: Catalog) -> None:
    implemented = [p.key for p in catalog.papers.values() if p.status == "implemented"]
    missing = [k for k in implemented if k not in REGISTRY]
    assert missing == [], f"marked implemented but not registered: {missing}"


def test_registry_and_catalog_agree(catalog: Catalog) -> None:
    assert check_registry(catalog, REGISTRY) == []


# --------------------------------------------------------------------------- a fake registry
class kim2019fake:  # noqa: N801 - a method class is named after its key
    """Stands in for a method registered under a key the catalog lacks."""


class smith2015distilling:  # noqa: N801
    """Stands in for the fixture paper's method."""


@pytest.fixture
def fixture_catalog() -> Catalog:
    return load_catalog(FIXTURES / "valid")


def test_registered_key_without_catalog_entry(fixture_catalog: Catalog) -> None:
    registry = Registry()
    registry.add("kim2019fake", "pruning", kim2019fake)
    problems = check_registry(fixture_catalog, registry)
    line = inspect.getsourcelines(kim2019fake)[1]
    hits = [p for p in problems if "kim2019fake" in p]
    assert len(hits) == 1
    assert re.match(rf"^.*test_registry_catalog\.py:{line}: key: method 'kim2019fake' is registered", hits[0])


def test_implemented_entry_without_method(fixture_catalog: Catalog) -> None:
    paper = fixture_catalog.papers["doe2017pruning"]
    paper.status = "implemented"
    problems = check_registry(fixture_catalog, Registry())
    assert len(problems) == 1
    assert re.match(r"^.*doe2017pruning\.yaml:7: status: 'doe2017pruning' is marked implemented but no method",
                    problems[0]), problems


def test_registered_method_whose_entry_is_not_implemented(fixture_catalog: Catalog) -> None:
    registry = Registry()
    registry.add("smith2015distilling", "pruning", smith2015distilling)
    problems = check_registry(fixture_catalog, registry)
    fields = sorted(re.match(r"^.*smith2015distilling\.yaml:\d+: (\w+):", p).group(1) for p in problems)
    assert fields == ["family", "status"], problems
