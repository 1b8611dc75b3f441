"""Collect validation problems as ``path:line: field: message`` lines."""
from __future__ import annotations

import os
from pathlib import Path


def show_path(path: Path | str) -> str:
    """``path`` relative to the working directory when it lies below it, else as given."""
    p = Path(path)
    try:
        return os.path.relpath(p.resolve(), Path.cwd()) if p.resolve().is_relative_to(Path.cwd()) else str(p)
    except (OSError, ValueError):
        return str(p)


class Problems:
    """An ordered, duplicate-free list of problem lines; the loader raises once at the end."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def add(self, path: Path | str, line: int, field: str, message: str) -> None:
        text = f"{show_path(path)}:{max(int(line), 1)}: {field}: {message}"
        if text not in self._lines:
            self._lines.append(text)

    def extend(self, lines: list[str]) -> None:
        for text in lines:
            if text not in self._lines:
                self._lines.append(text)

    @property
    def lines(self) -> list[str]:
        return list(self._lines)

    def __bool__(self) -> bool:
        return bool(self._lines)

    def __len__(self) -> int:
        return len(self._lines)
