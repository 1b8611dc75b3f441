"""Validated method configs: each paper's ``Config`` dataclass declares types and ranges.

A field is declared with a plain annotation or with ``typing.Annotated`` and
``pydantic.Field`` constraints::

    @dataclass
    class Config:
        final_sparsity: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.8   # s_f
        engine: Literal["x86", "fbgemm"] = "x86"

:func:`validated_config` checks every field of the resulting config (overrides and
defaults) with pydantic in strict mode, so ``"high"`` is not a float, ``True`` is not
an int, NaN and infinity are not numbers; an int is accepted where a float is declared
(and stored as a float), a JSON/YAML list where a tuple is declared. A bad value raises
:class:`ConfigError` (a ``ValueError``) whose one-line message names the method, the
field, the value and the rule.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import typing
from typing import Any

import annotated_types
from pydantic import ConfigDict, TypeAdapter, ValidationError

STRICT = ConfigDict(strict=True, allow_inf_nan=False)
_BOUNDS = ((annotated_types.Ge, "ge", ">="), (annotated_types.Gt, "gt", ">"), (annotated_types.Le, "le", "<="),
           (annotated_types.Lt, "lt", "<"), (annotated_types.MultipleOf, "multiple_of", "a multiple of"),
           (annotated_types.MinLen, "min_length", "length >="), (annotated_types.MaxLen, "max_length", "length <="))


class ConfigError(ValueError):
    """A config override or default that breaks its field's declared type or range (one-line message)."""


def validated_config(method: type, overrides: dict[str, Any]) -> Any:
    """``method.Config(**overrides)``, every field (override or default) checked against its declaration.

    Checks run field by field (the first bad field is reported), then the dataclass is built, so a
    ``__post_init__`` can add rules that span fields (raising ``ValueError``, reported the same way).
    """
    name = getattr(method, "key", method.__name__)
    config_cls = method.Config
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(f"{name}: unknown config option(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(fields) or 'none'}")
    adapters = _adapters(config_cls)
    values: dict[str, Any] = {}
    for field, spec in fields.items():
        if field in overrides:
            value, source = overrides[field], "override"
        elif spec.default is not dataclasses.MISSING:
            value, source = spec.default, "default"
        elif spec.default_factory is not dataclasses.MISSING:
            value, source = spec.default_factory(), "default"
        else:
            raise ConfigError(f"{name}: config option {field!r} has no default and was not given")
        try:
            values[field] = _validate(adapters[field], value)  # normalised: 1 -> 1.0 for a float, [..] -> (..)
        except ValidationError as exc:
            raise ConfigError(f"{name}: config {field}={value!r} ({source}) rejected: {_reason(exc)} "
                              f"(rule: {field} is {rule(config_cls, field)})") from None
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: config rejected: {exc}") from None


def rule(config_cls: type, field: str) -> str:
    """The declared type and constraints of ``field`` in words, e.g. ``float, >= 0.0, < 1.0``."""
    hint = _hints(config_cls)[field]
    base, parts = hint, []
    if typing.get_origin(hint) is typing.Annotated:
        base, *meta = typing.get_args(hint)
        for m in meta:
            for item in getattr(m, "metadata", [m]):
                for kind, attr, word in _BOUNDS:
                    if isinstance(item, kind):
                        parts.append(f"{word} {getattr(item, attr)!r}")
    return ", ".join([_type_name(base), *parts])


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _validate(adapter: TypeAdapter, value: Any) -> Any:
    """Strict validation with JSON's view of containers (a list is a tuple); Python objects as they are."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return adapter.validate_python(value)
    return adapter.validate_json(text)


def _reason(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    msg = err["msg"][0].lower() + err["msg"][1:]
    return f"{msg} at {where}" if where else msg


@functools.cache
def _hints(config_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(config_cls, include_extras=True)


@functools.cache
def _adapters(config_cls: type) -> dict[str, TypeAdapter]:
    hints = _hints(config_cls)
    return {f.name: TypeAdapter(hints[f.name], config=STRICT) for f in dataclasses.fields(config_cls)}
