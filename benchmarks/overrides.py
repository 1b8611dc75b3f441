"""``mcbench run --config``: per-method config overrides, inline JSON or a YAML/JSON file.

    --config '{"zhu2017prune": {"final_sparsity": 0.9}}'
    --config sweep.yaml          # zhu2017prune: {final_sparsity: 0.9}
    --config sweep.json

Parsing only: the result maps method keys to option mappings; which methods may be
configured and which values are valid is checked by ``runner.check_plan`` before any work.
YAML goes through ``yaml.safe_load`` only.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mcbench.benchmarks.errors import McbenchError

SUFFIXES = (".json", ".yaml", ".yml")


class ConfigFileError(McbenchError):
    """A ``--config`` value that cannot be read or parsed (one-line message)."""


def load_overrides(value: str | None) -> dict[str, dict[str, Any]]:
    """Inline JSON (starts with ``{``) or the path of a .json/.yaml/.yml file -> ``{method: {option: value}}``."""
    if value is None or not value.strip():
        return {}
    text = value.strip()
    if text.startswith("{"):
        return _check_shape(_parse_json(text, "--config"), "--config")
    path = Path(text).expanduser()
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigFileError(f"--config {value!r} is neither a JSON object nor a .json/.yaml/.yml file")
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"--config: cannot read {path}: {exc}") from None
    where = f"--config {path}"
    data = _parse_json(content, where) if path.suffix.lower() == ".json" else _parse_yaml(content, where)
    return _check_shape({} if data is None else data, where)


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(f"{where}: invalid JSON: {exc}") from None


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigFileError(f"{where}: invalid YAML{line}: {problem}") from None


def _check_shape(data: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(data, dict):
        raise ConfigFileError(f"{where}: expected a mapping of method keys to option mappings, "
                              f"got {type(data).__name__}")
    for key, options in data.items():
        if not isinstance(key, str):
            raise ConfigFileError(f"{where}: method keys are strings, got {key!r}")
        if not isinstance(options, dict):
            raise ConfigFileError(f"{where}: options of {key!r} must be a mapping, got {options!r}")
    return data
