"""Fingerprints of the code and the data a number came from.

A result row and a cached checkpoint are keyed by these, so a change to the
code that produced them, or to the tensors they were trained and scored on,
means a rerun and a retrain, never "already stored".

Code: a hash of the *contents* of the source files (line endings normalised),
each found through its imported module's ``__file__`` and named by its module
name, so an installed and an editable copy of the same tree give the same hash.
Any change to a listed file counts, comments included: the harness cannot tell
which edits leave every number unchanged.

Data: shapes, dtypes and a hash of the bytes of the tensors actually used.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

import torch

# Harness modules that train a cached stage (baseline, teacher, student).
STAGE_MODULES = ("train", "archs", "data", "tasks")
# Harness modules that train, convert and measure a row ("deploy" only where it exists).
ROW_MODULES = STAGE_MODULES + ("measure", "runner", "deploy", "deployed", "sparse_kernel", "cache", "record",
                                 "reproduce")
# Method code shared by every paper (not a paper itself).
SHARED_METHOD_MODULES = ("mcbench.methods", "mcbench.methods.protocols", "mcbench.methods.registry")
FLOWS_PACKAGE = "mcbench.methods.flows"   # shared flows, if the package exists: every file under it counts
DIGEST_CHARS = 16


def _module(name: str):
    """The imported module ``name``, or None if no such module exists."""
    if name in sys.modules:
        return sys.modules[name]
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(name)


def module_file(name: str) -> Path | None:
    mod = _module(name)
    file = getattr(mod, "__file__", None)
    return Path(file) if file else None


def _normalised(path: Path) -> bytes:
    return path.read_bytes().replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def digest_files(files: dict[str, Path]) -> str:
    """Hash of ``{stable name: file}``: names and normalised contents, in name order."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + _normalised(files[name]) + b"\0")
    return h.hexdigest()[:DIGEST_CHARS]


def _harness_files(names: tuple[str, ...]) -> dict[str, Path]:
    out = {}
    for short in names:
        name = f"mcbench.benchmarks.{short}"
        path = module_file(name)
        if path is not None:
            out[name] = path
    return out


def _package_files(package: str) -> dict[str, Path]:
    """Every ``.py`` file under an (optional) package, named relative to it."""
    init = module_file(package)
    if init is None:
        return {}
    root = init.parent
    return {f"{package}/{p.relative_to(root).as_posix()}": p for p in sorted(root.rglob("*.py"))}


def _imported_method_modules(path: Path, module: str) -> set[str]:
    """``mcbench.methods.*`` modules that a method file imports (so a paper built on another paper follows it)."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            if not base or not base.startswith("mcbench.methods"):
                continue
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mcbench.methods"))
    return found


def _is_module(name: str) -> bool:
    try:
        return name in sys.modules or importlib.util.find_spec(name) is not None
    except (ModuleNotFoundError, ValueError):
        return False


def _method_files(module: str) -> dict[str, Path]:
    """The paper's own file, its family's ``_*.py`` helpers, and method modules it imports (transitively)."""
    files: dict[str, Path] = {}
    family = module.rsplit(".", 1)[0]
    family_file = module_file(family)
    if family_file is not None:
        for p in sorted(family_file.parent.glob("_*.py")):  # __init__.py and _helpers.py
            files[family if p.name == "__init__.py" else f"{family}.{p.stem}"] = p
    todo, seen = [module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            raise ValueError(f"cannot find the source of method module {name!r}")
        files[name] = path
        todo.extend(_imported_method_modules(path, name))
    return files


def stage_fingerprint() -> str:
    """Code that trains a cached stage (baseline/teacher/student checkpoint)."""
    return digest_files(_harness_files(STAGE_MODULES))


def row_fingerprint(method_module: str | None) -> str:
    """Code behind a row: the harness that trains, converts and measures, shared method code, and the
    paper's module with its helpers (``method_module`` None for the harness's reference rows)."""
    files = _harness_files(ROW_MODULES)
    for name in SHARED_METHOD_MODULES:
        path = module_file(name)
        if path is not None:
            files[name] = path
    files.update(_package_files(FLOWS_PACKAGE))
    if method_module is not None:
        files.update(_method_files(method_module))
    return digest_files(files)


def tensors_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """Shapes, dtypes and bytes of named tensors (the exact train subset, val and test used)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()[:DIGEST_CHARS]


__all__ = ["stage_fingerprint", "row_fingerprint", "tensors_fingerprint", "digest_files", "module_file",
           "STAGE_MODULES", "ROW_MODULES"]
