"""The CLI runs with a fixed, recorded allocator: jemalloc preloaded (or glibc tunables), once, with an opt-out."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import REPO
from mcbench.benchmarks import allocator


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in (allocator.GUARD_ENV, allocator.OPT_OUT_ENV, "LD_PRELOAD", "GLIBC_TUNABLES")}
    env.update(COLUMNS="200", PYTHONWARNINGS="ignore", **extra)
    return env


def _env_command(*args: str, **extra) -> dict:
    p = subprocess.run([sys.executable, "-m", "mcbench.benchmarks.cli", *args, "env"], capture_output=True, text=True,
                       cwd=REPO, timeout=300, env=_clean_env(**extra))
    assert p.returncode == 0, p.stderr
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in p.stdout.splitlines()) if v}


def test_preload_env_puts_jemalloc_first_and_sets_the_guard():
    env = allocator.preload_env({"LD_PRELOAD": "/opt/other.so", "PATH": "/bin"}, "/usr/lib/x/libjemalloc.so.2")
    assert env["LD_PRELOAD"] == "/usr/lib/x/libjemalloc.so.2 /opt/other.so"
    assert env[allocator.GUARD_ENV] == "1" and env["PATH"] == "/bin"
    assert "GLIBC_TUNABLES" not in env


def test_without_jemalloc_glibc_tunables_fix_the_mmap_threshold():
    env = allocator.preload_env({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F:glibc.malloc.arena_max=1"}, None)
    parts = env["GLIBC_TUNABLES"].split(":")
    assert "glibc.cpu.hwcaps=-AVX512F" in parts and "glibc.malloc.arena_max=1" not in parts
    assert set(allocator.GLIBC_MALLOC_TUNABLES) <= set(parts)
    assert "LD_PRELOAD" not in env and env[allocator.GUARD_ENV] == "1"


def test_opt_out_by_flag_or_environment():
    assert allocator.opted_out(["mcbench", "--no-preload", "run"], {})
    assert allocator.opted_out(["mcbench", "run"], {allocator.OPT_OUT_ENV: "1"})
    assert not allocator.opted_out(["mcbench", "run"], {})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD / glibc tunables are Linux-only")
def test_cli_reexecs_once_with_the_allocator_and_records_it():
    expected = "jemalloc" if allocator.find_jemalloc() else "glibc (tunables: "
    assert _env_command()["allocator"].startswith(expected)
    assert _env_command("--no-preload")["allocator"] == "glibc (default)"
    assert _env_command(**{allocator.OPT_OUT_ENV: "1"})["allocator"] == "glibc (default)"
    # the guard stops the re-exec: a process that already carries it keeps what it has
    assert _env_command(**{allocator.GUARD_ENV: "1"})["allocator"] == "glibc (default)"


def test_this_process_reports_its_allocator():
    assert allocator.describe().startswith(("jemalloc", "tcmalloc", "glibc", "platform"))
