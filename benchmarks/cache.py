"""Checkpoint cache for trained baselines and teachers.

A checkpoint's file name is a hash of everything that determines it (task,
dataset and data fingerprint, architecture, recipe, seed, role, device, thread
count, torch version, fingerprint of the training code). That identity is saved
in the file and compared on load: a file of another run sitting in the slot is
refused, never used. Files are safetensors (no pickle), written to a temporary
name and renamed, so a killed run never leaves a half-written checkpoint behind.
``lock`` serialises "load or train and save" of one slot across processes (parallel workers,
concurrent sweeps), so no checkpoint is ever trained twice.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no cross-process lock, concurrent training possible
    fcntl = None

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from mcbench.benchmarks.errors import CheckpointError
from mcbench.benchmarks.record import config_hash


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def identity_differences(stored: dict, requested: dict) -> list[str]:
    """``"<field> <stored> vs <requested>"`` for every field that differs (nested fields dotted)."""
    a = _flat(json.loads(json.dumps(stored, default=str)))
    b = _flat(json.loads(json.dumps(requested, default=str)))
    show = lambda v: "(none)" if v is None else (v if isinstance(v, str) else json.dumps(v))  # noqa: E731
    return [f"{k.replace('_', ' ')} {show(a.get(k))} vs {show(b.get(k))}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_identity(path: Path, meta: dict, requested: dict) -> None:
    """Refuse a checkpoint whose stored identity is not the requested one (a file copied into another slot)."""
    if "identity" not in meta:
        raise CheckpointError(f"checkpoint {path} has no stored identity, so it cannot be trusted; delete it to retrain")
    try:
        stored = json.loads(meta["identity"])
    except json.JSONDecodeError:
        raise CheckpointError(f"checkpoint {path} has an unreadable stored identity; delete it to retrain") from None
    diffs = identity_differences(stored, requested)
    if diffs:
        raise CheckpointError(f"checkpoint {path} belongs to another run (stored vs requested: {'; '.join(diffs)}); "
                              "delete it to retrain")


class CheckpointCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, identity: dict) -> Path:
        return self.root / f"{identity.get('role', 'model')}-{config_hash(identity)}.safetensors"

    @contextmanager
    def lock(self, identity: dict) -> Iterator[None]:
        """Hold the slot of ``identity`` exclusively (``flock`` on a ``.lock`` file beside it) for the block.

        The lock is released when the holder exits or dies (the kernel drops it with the process).
        """
        path = self.path(identity).with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(f, fcntl.LOCK_UN)

    def load(self, identity: dict, model: nn.Module) -> dict | None:
        """Load into ``model`` and return the stored metadata, or None if not cached.

        Raises ``CheckpointError`` (one line) if the file's stored identity differs from ``identity``.
        """
        path = self.path(identity)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            check_identity(path, meta, identity)
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint {path} is corrupted ({e}); delete it to retrain") from None
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[1:2] or [str(e)[:200]]
            raise CheckpointError(f"checkpoint {path} does not match the architecture: {first[0].strip()}") from None
        return json.loads(meta.get("mcbench", "{}"))

    def save(self, identity: dict, model: nn.Module, info: dict) -> Path:
        path = self.path(identity)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # concurrent sweeps never share a temp file
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp), metadata={"mcbench": json.dumps(info), "identity": json.dumps(identity, default=str)})
        os.replace(tmp, path)
        return path

def load_weights_safely(path: Path) -> dict[str, torch.Tensor]:
    """Load a user-supplied .pt state dict with ``weights_only=True`` (no arbitrary code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types here
        raise CheckpointError(f"cannot load {path} safely: {e}") from None
