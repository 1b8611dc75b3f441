"""The one method registry.

A method is registered under its paper's BibTeX key (the key in ``catalog/``)::

    @register(family="distillation")
    class hinton2015distilling(DistillationMethod): ...

The class name, the file stem and the catalog key are the same string; the
registry raises on a duplicate and on a name that is not a valid key, and a
failed lookup names the key and the closest registered keys.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
import re
from dataclasses import dataclass
from typing import Callable, Iterator

FAMILIES = ("distillation", "pruning", "quantization", "binarization", "compact", "acceleration")
# \A...\Z, not ^...$: "$" also matches before a trailing newline, so "key\n" would pass a .match()
KEY_RE = re.compile(r"\A[a-z][a-z\-]*\d{4}[a-z0-9]+\Z")


def is_valid_key(key: object) -> bool:
    """A lowercase ASCII BibTeX-style key like ``hinton2015distilling``, matched in full."""
    return isinstance(key, str) and key.isascii() and KEY_RE.fullmatch(key) is not None


class UnknownMethodError(KeyError):
    """Raised for a key that no method is registered under."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


@dataclass(frozen=True)
class MethodEntry:
    key: str
    family: str
    cls: type
    module: str

    @property
    def source_file(self) -> str:
        """Path relative to the repository root, e.g. ``methods/pruning/zhu2017prune.py``."""
        return self.module.removeprefix("mcbench.").replace(".", "/") + ".py"


class Registry:
    """Maps BibTeX keys to method classes. One instance, ``REGISTRY``."""

    def __init__(self, autoload: bool = False) -> None:
        self._entries: dict[str, MethodEntry] = {}
        self._autoload_pending = autoload  # import mcbench.methods.<family>.* on first lookup

    def add(self, key: str, family: str, cls: type) -> None:
        if not is_valid_key(key):
            raise ValueError(f"method key {key!r} is not a BibTeX-style key like 'hinton2015distilling'")
        if family not in FAMILIES:
            raise ValueError(f"method {key!r}: unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
        if key in self._entries:
            raise ValueError(f"method key {key!r} registered twice ({self._entries[key].module} and {cls.__module__})")
        self._entries[key] = MethodEntry(key=key, family=family, cls=cls, module=cls.__module__)

    def get(self, key: str) -> MethodEntry:
        self._autoload()
        try:
            return self._entries[key]
        except KeyError:
            close = difflib.get_close_matches(key, self._entries, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownMethodError(
                f"unknown method {key!r}{hint} (see `mcbench methods` for the {len(self._entries)} registered keys)"
            ) from None

    def create(self, key: str, **config):
        """Instantiate the method registered under ``key`` with its config overrides."""
        return self.get(key).cls(**config)

    def keys(self, family: str | None = None) -> list[str]:
        self._autoload()
        return sorted(k for k, e in self._entries.items() if family is None or e.family == family)

    def __iter__(self) -> Iterator[MethodEntry]:
        self._autoload()
        return iter(sorted(self._entries.values(), key=lambda e: e.key))

    def __contains__(self, key: object) -> bool:
        self._autoload()
        return key in self._entries

    def __len__(self) -> int:
        self._autoload()
        return len(self._entries)


    def _autoload(self) -> None:
        """Import every module under ``methods.<family>`` once so their decorators run."""
        if not self._autoload_pending:
            return
        self._autoload_pending = False
        for family in FAMILIES:
            try:
                pkg = importlib.import_module(f"mcbench.methods.{family}")
            except ModuleNotFoundError:
                continue
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{pkg.__name__}.{info.name}")


REGISTRY = Registry(autoload=True)


def register(*, family: str) -> Callable[[type], type]:
    """Class decorator: register a method under its class name (= its BibTeX key)."""

    def deco(cls: type) -> type:
        REGISTRY.add(cls.__name__, family, cls)
        cls.key = cls.__name__
        cls.family = family
        return cls

    return deco
