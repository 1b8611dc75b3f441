"""Checkpoint cache for trained baselines and teachers.

A checkpoint's file name is a hash of everything that determines it (task,
dataset, architecture, recipe, seed, role, torch version). Files are
safetensors (no pickle), written to a temporary name and renamed, so a killed
run never leaves a half-written checkpoint behind.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from mcbench.benchmarks.errors import CheckpointError
from mcbench.benchmarks.record import config_hash

class CheckpointCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, identity: dict) -> Path:
        return self.root / f"{identity.get('role', 'model')}-{config_hash(identity)}.safetensors"

    def load(self, identity: dict, model: nn.Module) -> dict | None:
        """Load into ``model`` and return the stored metadata, or None if not cached."""
        path = self.path(identity)
        if not path.exists():
            return None
        try:
            state = load_file(str(path))

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
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
