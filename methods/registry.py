"""The one method registry.

A method is registered under its paper's BibTeX key (the key in ``catalog/``)::

    @register(family="distillation")
    class hinton2015distilling(DistillationMethod): ...

The class name, the file stem and the catalog key are the same string; the
registry raises on a duplicate and on a name that is not a valid key, and a
failed lookup names the key and the closest registered keys.

A method module that fails to import (a half-edited file) does not take the
registry down: it is recorded in ``REGISTRY.broken`` with the reason. A method
that imports but is still an unfinished ``mcbench new-method`` scaffold says so
in ``MethodEntry.unfinished``. ``REGISTRY.unusable()`` lists both, so a default
sweep can leave them out with a warning and an explicit request can fail in one line.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
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

    @property
    def unfinished(self) -> str | None:
        """Why this method is still an unfinished ``mcbench new-method`` scaffold, or ``None``."""
        return scaffold_placeholder(self.cls)


# What `mcbench new-method` (catalog/templates.py) leaves until filled in: a docstring starting with
# "TODO" and protocol methods that raise NotImplementedError("<key>.<name>: fill in ...").
_PLACEHOLDER_RAISE = re.compile(r"raise\s+NotImplementedError\(\s*f?[\"'][^\"']*: fill in")


def scaffold_placeholder(cls: type) -> str | None:
    """Where ``cls`` still holds a scaffold placeholder (its module docstring or a method body), or ``None``."""
    module = inspect.getmodule(cls)
    if (getattr(module, "__doc__", None) or "").lstrip().startswith("TODO"):
        return "its docstring is still the `mcbench new-method` placeholder"
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return None
    match = _PLACEHOLDER_RAISE.search(source)
    if match:
        line = inspect.getsourcelines(cls)[1] + source[:match.start()].count("\n")
        return f"line {line} still raises the `mcbench new-method` placeholder NotImplementedError"
    return None


class Registry:
    """Maps BibTeX keys to method classes. One instance, ``REGISTRY``."""

    def __init__(self, autoload: bool = False) -> None:
        self._entries: dict[str, MethodEntry] = {}
        self._autoload_pending = autoload  # import mcbench.methods.<family>.* on first lookup
        self.broken: dict[str, str] = {}   # module stem (= key) -> why its module did not import

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
            if key in self.broken:
                raise UnknownMethodError(f"method {key!r} cannot be used: {self.broken[key]}") from None
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

    def unusable(self) -> dict[str, str]:
        """Methods a sweep cannot run, with the reason: modules that fail to import, unfinished scaffolds."""
        self._autoload()
        out = dict(self.broken)
        out.update({e.key: f"{e.source_file}: unfinished scaffold: {e.unfinished}"
                    for e in self._entries.values() if e.unfinished})
        return dict(sorted(out.items()))

    def _autoload(self) -> None:
        """Import every module under ``methods.<family>`` once so their decorators run.

        A module that raises on import is recorded in ``broken`` (and skipped), never raised here.
        """
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
                    self._import(f"{pkg.__name__}.{info.name}", f"methods/{family}/{info.name}.py", info.name)

    def _import(self, module: str, source_file: str, stem: str) -> None:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any error in a method file must not break the others
            first = (str(exc).strip().splitlines() or [""])[0]
            self.broken[stem] = f"{source_file} does not import: {type(exc).__name__}: {first}".rstrip(": ")


REGISTRY = Registry(autoload=True)


def register(*, family: str) -> Callable[[type], type]:
    """Class decorator: register a method under its class name (= its BibTeX key)."""

    def deco(cls: type) -> type:
        REGISTRY.add(cls.__name__, family, cls)
        cls.key = cls.__name__
        cls.family = family
        return cls

    return deco
