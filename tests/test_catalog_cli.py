"""``mcbench catalog ...`` and ``mcbench new-method`` through typer's CliRunner.

A local Typer mounts the commands exactly as ``benchmarks/cli.py`` does.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import bibtexparser
import pytest
import typer
from typer.testing import CliRunner

from mcbench.catalog.cli import catalog_app, new_method

FIXTURES = Path(__file__).parent / "fixtures" / "catalog"
VALID = str(FIXTURES / "valid")

app = typer.Typer()
app.add_typer(catalog_app, name="catalog")
app.command("new-method")(new_method)
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def assert_one_line_error(result, code: int) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# --------------------------------------------------------------------------- validate
def test_validate_ok() -> None:
    result = invoke("catalog", "validate", "--root", VALID, "--no-registry")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ok: 3 papers"


@pytest.mark.parametrize("case", ["malformed_bibtex", "duplicate_doi", "claim_without_unit", "bad_yaml"])
def test_validate_fails_with_file_line_field(case: str) -> None:
    result = invoke("catalog", "validate", "--root", str(FIXTURES / case), "--no-registry")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == f"{len(lines) - 1} problem(s)"
    assert all(case in line and ":" in line for line in lines[:-1])


def test_validate_checks_the_registry_by_default() -> None:
    """The fixture has none of the registered methods: each one is reported."""
    result = invoke("catalog", "validate", "--root", VALID)
    from mcbench.methods.registry import REGISTRY

    if len(REGISTRY) == 0:
        pytest.skip("no method is registered yet, so the registry check has nothing to report")
    assert result.exit_code == 1
    assert all(key in result.stderr for key in REGISTRY.keys())


def test_real_catalog_validates() -> None:
    result = invoke("catalog", "validate")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ok: ") and "registry consistent" in result.stdout


# --------------------------------------------------------------------------- list / show
def test_list_prints_per_family_counts() -> None:
    result = invoke("catalog", "list", "--root", VALID)
    assert result.exit_code == 0, result.output
    assert "3 papers: distillation 1, pruning 1, survey 1" in result.stdout
    assert "per family" in result.stdout


@pytest.mark.parametrize("args, keys", [
    (["--family", "pruning"], ["doe2017pruning"]),
    (["--tag", "soft-targets"], ["smith2015distilling"]),
    (["--year", "2018"], ["roe2018survey"]),
    (["--status", "catalog-only"], ["roe2018survey"]),
    (["--status", "planned", "--year", "2015"], ["smith2015distilling"]),
])
def test_list_filters(args: list[str], keys: list[str]) -> None:
    result = invoke("catalog", "list", "--root", VALID, *args)
    assert result.exit_code == 0, result.output
    shown = [k for k in ("doe2017pruning", "roe2018survey", "smith2015distilling") if k in result.stdout]
    assert shown == keys
    assert f"{len(keys)} paper" in result.stdout


def test_list_rejects_an_unknown_family() -> None:
    result = invoke("catalog", "list", "--root", VALID, "--family", "distilation")
    assert_one_line_error(result, 2)
    assert "unknown family 'distilation'" in result.stderr


def test_list_on_a_broken_catalog_points_to_validate() -> None:
    result = invoke("catalog", "list", "--root", str(FIXTURES / "duplicate_key"))
    assert_one_line_error(result, 1)
    assert "mcbench catalog validate" in result.stderr


def test_show() -> None:
    result = invoke("catalog", "show", "smith2015distilling", "--root", VALID)
    assert result.exit_code == 0, result.output
    for text in ("Distilling CNNs into Small Müller Nets", "John Smith, Hans Müller, Anna van der Berg",
                 "test_errors = 74 errors on MNIST (Section 3)", "acc_delta_pp", "@misc{smith2015distilling,",
                 "https://arxiv.org/abs/1503.00001"):
        assert text in result.stdout, text


def test_show_unknown_key_suggests() -> None:
    result = invoke("catalog", "show", "smith2015distiling", "--root", VALID)
    assert_one_line_error(result, 2)
    assert "did you mean smith2015distilling" in result.stderr


# --------------------------------------------------------------------------- export
def test_export_bib_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "catalog.bib"
    result = invoke("catalog", "export", "--format", "bib", "--output", str(out), "--root", VALID)
    assert result.exit_code == 0, result.output
    library = bibtexparser.parse_file(str(out))
    assert not library.failed_blocks
    assert sorted(e.key for e in library.entries) == ["doe2017pruning", "roe2018survey", "smith2015distilling"]


def test_export_json_to_stdout() -> None:
    result = invoke("catalog", "export", "--format", "json", "--root", VALID)
    assert result.exit_code == 0, result.output
    papers = json.loads(result.stdout)["papers"]
    assert [p["key"] for p in papers] == ["doe2017pruning", "roe2018survey", "smith2015distilling"]
    assert papers[0]["bib_file"] == "valid/papers/doe2017pruning.bib"


def test_export_csv_header() -> None:
    result = invoke("catalog", "export", "--format", "csv", "--root", VALID)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].startswith("key,family,status,year,title,authors")
    assert len(result.stdout.strip().splitlines()) == 4


def test_export_rejects_an_unknown_format() -> None:
    assert_one_line_error(invoke("catalog", "export", "--format", "xml", "--root", VALID), 2)


# --------------------------------------------------------------------------- new-method
def _repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(FIXTURES / "valid", root / "catalog")
    (root / "methods" / "pruning").mkdir(parents=True)
    (root / "methods" / "pruning" / "__init__.py").write_text("")
    return root


def test_new_method(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    result = invoke("new-method", "lee2019pruning", "--family", "pruning", "--root", str(root))
    assert result.exit_code == 0, result.output
    for rel in ("methods/pruning/lee2019pruning.py", "catalog/papers/lee2019pruning.yaml",
                "catalog/papers/lee2019pruning.bib", "tests/methods/test_lee2019pruning.py"):
        assert f"created  {rel}" in result.stdout
        assert (root / rel).is_file()
    assert "appended" not in result.stdout and not (root / "catalog" / "bib").exists()
    assert "mcbench run --methods lee2019pruning --task digits --budget smoke" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["doe2017pruning", "--family", "pruning"], "already exists"),
    (["Doe2017", "--family", "pruning"], "invalid key"),
    (["lee2019x", "--family", "magic"], "unknown family"),
])
def test_new_method_refusals(tmp_path: Path, args: list[str], message: str) -> None:
    result = invoke("new-method", *args, "--root", str(_repo(tmp_path)))
    assert_one_line_error(result, 2)
    assert message in result.stderr
