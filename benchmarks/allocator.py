"""A stable, recorded memory allocator for the ``mcbench`` process.

With glibc's default malloc, CPU latency depends on the process's allocation history: blocks above
the (dynamic) mmap threshold are mapped and unmapped on every forward pass until earlier frees
have raised the threshold, so the same model timed in a fresh process and after training differed
by 30-60%. The CLI therefore re-executes itself once, before torch loads, with

1. jemalloc (Debian ``libjemalloc2``, installed by ``scripts/bootstrap.sh``) in ``LD_PRELOAD``, or,
   when it is not installed,
2. fixed glibc tunables (``GLIBC_TUNABLES``): a fixed 32 MiB mmap threshold (the largest glibc allows;
   fixing it switches off the dynamic adjustment) and a 256 MiB trim threshold, so activations come
   from the heap from the first call on.

``MCBENCH_ALLOCATOR_SET`` guards against re-executing twice; ``MCBENCH_NO_PRELOAD=1`` or the CLI
flag ``--no-preload`` opts out. ``describe()`` says what this process really runs with (it reads
``/proc/self/maps``), and is recorded on every result row and by ``mcbench env``.

This module imports nothing heavy: it runs before torch is loaded.
"""
from __future__ import annotations

import glob
import os
import sys

GUARD_ENV = "MCBENCH_ALLOCATOR_SET"
OPT_OUT_ENV = "MCBENCH_NO_PRELOAD"
OPT_OUT_FLAG = "--no-preload"
GLIBC_MALLOC_TUNABLES = ("glibc.malloc.mmap_threshold=33554432", "glibc.malloc.trim_threshold=268435456")
JEMALLOC_GLOBS = ("/usr/lib/*-linux-gnu/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2", "/usr/lib64/libjemalloc.so.2",
                  "/usr/local/lib/libjemalloc.so.2")


def find_jemalloc() -> str | None:
    """Path of an installed libjemalloc.so.2, or None."""
    for pattern in JEMALLOC_GLOBS:
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[0]
    return None


def opted_out(argv: list[str] | None = None, environ: dict | None = None) -> bool:
    environ = os.environ if environ is None else environ
    argv = sys.argv if argv is None else argv
    return environ.get(OPT_OUT_ENV, "").lower() in ("1", "true", "yes") or OPT_OUT_FLAG in argv


def preload_env(environ: dict, jemalloc: str | None) -> dict:
    """The environment to re-execute with: jemalloc preloaded, else glibc tunables; guard set."""
    env = dict(environ)
    env[GUARD_ENV] = "1"
    if jemalloc:
        env["LD_PRELOAD"] = " ".join(p for p in (jemalloc, environ.get("LD_PRELOAD", "")) if p)
    else:
        old = [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t and not t.startswith("glibc.malloc.")]
        env["GLIBC_TUNABLES"] = ":".join(old + list(GLIBC_MALLOC_TUNABLES))
    return env


def reexec_with_allocator() -> None:
    """Re-execute this Python process once with the chosen allocator (Linux only; no-op otherwise)."""
    if not sys.platform.startswith("linux") or os.environ.get(GUARD_ENV) or opted_out():
        return
    argv = [sys.executable, *getattr(sys, "orig_argv", [sys.executable, *sys.argv])[1:]]
    env = preload_env(dict(os.environ), find_jemalloc())
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, argv, env)
    except OSError:  # cannot re-exec (unusual sandbox): carry on; describe() records the default allocator
        return


def describe() -> str:
    """The allocator this process really uses: ``jemalloc``, ``tcmalloc``, ``glibc (tunables: ...)`` or ``glibc``."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        maps = ""
    for lib in ("jemalloc", "tcmalloc"):
        if f"lib{lib}" in maps:
            return lib
    tunables = [t for t in os.environ.get("GLIBC_TUNABLES", "").split(":") if t.startswith("glibc.malloc.")]
    if sys.platform.startswith("linux"):
        return f"glibc (tunables: {':'.join(tunables)})" if tunables else "glibc (default)"
    return "platform default"


def main() -> None:
    """Console entry point ``mcbench``: choose the allocator (re-exec), then run the CLI."""
    reexec_with_allocator()
    from mcbench.benchmarks.cli import run_cli

    run_cli()
