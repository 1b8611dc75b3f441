"""Number formatting for the site's tables (display only: the stored values keep full precision)."""
from __future__ import annotations

import math

DASH = "—"


def isnum(v) -> bool:
    try:
        return v is not None and not math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def sig(v, digits: int = 3) -> str:
    """``v`` to ``digits`` significant figures, never in exponent notation."""
    if not isnum(v):
        return DASH
    v = float(v)
    if v == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    return f"{v:.{decimals}f}"


def fixed(v, decimals: int = 2) -> str:
    return f"{float(v):.{decimals}f}" if isnum(v) else DASH


def pm(mean, std, decimals: int | None = None) -> str:
    """``mean ± std`` (std over seeds; omitted for a single seed)."""
    f = (lambda x: fixed(x, decimals)) if decimals is not None else sig
    if not isnum(mean):
        return DASH
    if not isnum(std):
        return f(mean)
    return f"{f(mean)} ± {fixed(std, decimals) if decimals is not None else sig(std, 2)}"


def scale_for(values, units=((1e9, "G"), (1e6, "M"), (1e3, "k"))) -> tuple[float, str]:
    """One display scale per table column (so sorting the column text sorts the numbers)."""
    nums = [abs(float(v)) for v in values if isnum(v)]
    if not nums:
        return 1.0, ""
    mid = sorted(nums)[len(nums) // 2]
    for factor, prefix in units:
        if mid >= factor:
            return factor, prefix
    return 1.0, ""


def times(v) -> str:
    return f"{sig(v)}×" if isnum(v) else DASH
