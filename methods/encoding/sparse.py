"""Relative sparse indices with filler zeros (Deep Compression, Han et al. 2016, Sec. 2, Fig. 2).

A layer's weights are flattened (row-major); for each nonzero the gap to the previous
stored entry is kept instead of its absolute position. A gap is stored as ``gap - 1`` in
``index_bits`` bits, so gaps 1..2**index_bits fit; a longer gap is bridged by filler entries,
each advancing 2**index_bits positions and holding the value code 0 (an exact zero).
"""
from __future__ import annotations

import numpy as np


def to_relative(flat_codes: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense flattened value codes (0 = zero) -> (stored gaps - 1, value codes incl. fillers)."""
    flat_codes = np.asarray(flat_codes, dtype=np.int64).ravel()
    pos = np.flatnonzero(flat_codes)
    span = 1 << index_bits
    gaps = np.diff(np.concatenate([[-1], pos]))
    fillers = (gaps - 1) // span                     # filler entries needed before each nonzero
    total = len(pos) + int(fillers.sum())
    rel = np.full(total, span - 1, dtype=np.int64)   # a filler advances a full span
    vals = np.zeros(total, dtype=np.int64)
    at = np.arange(len(pos)) + np.cumsum(fillers)    # where each real entry lands
    rel[at] = gaps - fillers * span - 1
    vals[at] = flat_codes[pos]
    return rel, vals


def from_relative(rel: np.ndarray, vals: np.ndarray, numel: int) -> np.ndarray:
    """Inverse of ``to_relative``: dense flattened value codes of length ``numel``."""
    positions = np.cumsum(np.asarray(rel, dtype=np.int64) + 1) - 1
    out = np.zeros(numel, dtype=np.int64)
    real = np.asarray(vals) != 0
    if positions.size and positions[real].max(initial=-1) >= numel:
        raise ValueError("relative indices point past the end of the layer")
    out[positions[real]] = np.asarray(vals)[real]
    return out
