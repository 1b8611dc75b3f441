"""`mcbench site build` builds aside and swaps: a failed or killed build leaves the previous site, and no mkdocs behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import REPO

FIXTURE_CATALOG = Path(__file__).parent / "fixtures" / "site" / "catalog"


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _previous_site(out: Path) -> dict[str, bytes]:
    out.mkdir(parents=True)
    (out / "index.html").write_text("<html>previous site</html>")
    (out / "stale.txt").write_text("from the previous build")
    return _tree(out)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def test_build_swaps_in_and_a_failed_build_keeps_the_previous_site(tmp_path):
    from mcbench.site.cli import site_app

    out = tmp_path / "site"
    _previous_site(out)
    r = CliRunner().invoke(site_app, ["build", "--out", str(out), "--catalog-dir", str(FIXTURE_CATALOG),
                                      "--results-dir", str(tmp_path / "no-snapshot")])
    assert r.exit_code == 0, r.output
    assert (out / "index.html").read_text() != "<html>previous site</html>" and not (out / "stale.txt").exists()
    assert (out / "catalog" / "index.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]   # no staging or old folder left
    built = _tree(out)

    r = CliRunner().invoke(site_app, ["build", "--out", str(out), "--catalog-dir", str(tmp_path / "no-catalog")])
    assert r.exit_code == 1 and "left as it was" in r.stderr, r.output
    assert _tree(out) == built and sorted(p.name for p in tmp_path.iterdir()) == ["site"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find orphans")
def test_killed_build_leaves_the_previous_site_and_no_mkdocs(tmp_path):
    out = tmp_path / "site"
    before = _previous_site(out)
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.Popen([sys.executable, "-m", "mcbench.site.cli", "build", "--out", str(out),
                             "--results-dir", str(tmp_path / "no-snapshot")], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    staging = []
    while time.time() < deadline and proc.poll() is None and not staging:
        staging = [p for p in tmp_path.iterdir() if p.name.startswith(".site.building-") and any(p.iterdir())]
        time.sleep(0.02)
    assert proc.poll() is None, "the build finished before it could be killed"
    assert staging, "the build never started writing its staging folder"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    assert _tree(out) == before                  # the previous site, untouched
    assert _processes_mentioning(str(out)) == []  # no orphan mkdocs still writing
    # the next build clears the dead build's staging folder and swaps in a full site
    from mcbench.site.cli import _clear_leftovers

    _clear_leftovers(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
