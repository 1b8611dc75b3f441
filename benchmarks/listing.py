"""Machine-readable output for the listing commands (``--format json|csv``; ``table`` is the human default)."""
from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Iterable

LIST_FORMATS = ("table", "json", "csv")


def _plain(value: Any) -> Any:
    """JSON-safe scalars: NaN and infinity become null (json.dumps would write invalid JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return _plain(value.item())
    return value


def dump(records: Iterable[dict], fmt: str) -> str:
    """``records`` as a JSON array or as CSV (nested values JSON-encoded in their cell)."""
    rows = [{k: _plain(v) for k, v in r.items()} for r in records]
    if fmt == "json":
        return json.dumps(rows, indent=1, default=str, allow_nan=False) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        fields = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
        return out.getvalue()
    raise ValueError(f"--format must be one of {', '.join(LIST_FORMATS)}, not {fmt!r}")


__all__ = ["LIST_FORMATS", "dump"]
