"""A clean, non-editable wheel install works from an unrelated directory.

The wheel is built from a copy of the tracked files (the checkout is never written to), installed
into a fresh virtual environment that reuses this interpreter's installed dependencies through a
``.pth`` line (as /work/mkworktree.sh does; nothing is downloaded), and run from a temporary
directory that holds a folder named ``benchmarks``, which must not shadow ``mcbench.benchmarks``.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _site_dirs() -> list[str]:
    """This interpreter's site-packages directories (its own and those it reaches through .pth lines)."""
    return [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]


def _setuptools_dir(minimum: int = 77) -> str | None:
    """A site directory holding setuptools >= ``minimum`` (pyproject's build requirement)."""
    for d in _site_dirs():
        for dist in md.distributions(path=[d]):
            if dist.metadata["Name"] == "setuptools" and int(dist.version.split(".")[0]) >= minimum:
                return d
    return None


def _run(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(venv python, its site-packages) with the wheel installed non-editable."""
    tools = _setuptools_dir()
    if tools is None:
        pytest.skip("no setuptools >= 77 installed (pyproject's build requirement); cannot build offline")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for rel in filter(None, (f.decode() for f in files)):
        if (REPO / rel).is_file():  # a tracked file deleted in the working tree is not copied
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((REPO / rel).read_bytes())
    env = {**os.environ, "PYTHONPATH": tools, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist")],
         cwd=src, env=env)
    wheel = next((tmp / "dist").glob("mcbench-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"mcbench", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "mcbench/catalog/papers/hinton2015distilling.yaml" in names
    assert "mcbench/catalog/settings/hinton2015distilling.yaml" in names

    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout.strip())
    (site / "mcbench-deps.pth").write_text("\n".join(_site_dirs()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", str(wheel)],
         cwd=tmp, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return py, site


def test_site_packages_holds_only_the_mcbench_namespace(installed):
    _, site = installed
    top = {p.name for p in site.iterdir()}
    assert "mcbench" in top
    for generic in ("methods", "benchmarks", "catalog", "site"):
        assert generic not in top and f"{generic}.py" not in top, f"generic top-level {generic!r} in site-packages"
    assert not any(n.startswith("__editable__") for n in top)  # a real install, not an editable one


def test_cli_runs_from_an_unrelated_directory_with_a_benchmarks_folder(installed, tmp_path):
    py, site = installed
    work = tmp_path / "elsewhere"
    (work / "benchmarks").mkdir(parents=True)
    (work / "benchmarks" / "__init__.py").write_text("raise ImportError('the user folder was imported')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = _run([str(py), "-c", "import mcbench.benchmarks.cli as c, mcbench.catalog.loader as l; "
                  "print(c.__file__); print(l.DEFAULT_ROOT)"], cwd=work, env=env).stdout.split()
    assert all(w.startswith(str(site)) for w in where), where
    mcbench = str(py.parent / "mcbench")
    listing = _run([mcbench, "catalog", "list"], cwd=work, env=env).stdout
    assert "hinton2015distilling" in listing and "howard2017mobilenets" in listing
    db = tmp_path / "runs.sqlite"
    _run([mcbench, "run", "--task", "digits", "--budget", "smoke", "--methods", "baseline", "--seeds", "1",
          "--db", str(db), "--cache-dir", str(tmp_path / "cache")], cwd=work, env=env)
    rows = _run([str(py), "-c", f"import sqlite3; print(sqlite3.connect({str(db)!r}).execute("
                 "'select method, task, dataset from results').fetchall())"], cwd=work, env=env).stdout
    assert "('baseline', 'digits', 'digits')" in rows
