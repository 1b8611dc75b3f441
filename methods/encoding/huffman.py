"""Canonical Huffman coding of small-alphabet integer streams (Deep Compression Sec. 4).

The table is stored as one code length per symbol (canonical codes are rebuilt from the
lengths), so the whole encoded stream is ``lengths || bits``. Written here rather than taken
from ``dahuffman``/``huffman`` on PyPI: those store their table with pickle (unsafe to load) or
not at all, and neither produces canonical codes from lengths alone.
"""
from __future__ import annotations

import heapq
import struct
from collections import Counter

import numpy as np

_HEAD = struct.Struct("<IHB")  # symbol count, alphabet size, max code length


def code_lengths(symbols: np.ndarray, alphabet: int) -> np.ndarray:
    """Huffman code length per symbol of ``range(alphabet)`` (0 for unused symbols)."""
    counts = Counter(np.asarray(symbols).ravel().tolist())
    lengths = np.zeros(alphabet, dtype=np.int64)
    if len(counts) == 1:  # one symbol still needs one bit per occurrence
        lengths[next(iter(counts))] = 1
        return lengths
    heap = [(c, i, (s,)) for i, (s, c) in enumerate(sorted(counts.items()))]
    heapq.heapify(heap)
    tie = len(heap)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, tie, s1 + s2))
        tie += 1
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code words (as integers) for the given lengths: shorter first, then by symbol."""
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, prev = 0, 0
    for s in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[s]) - prev
        codes[s], prev = code, int(lengths[s])
        code += 1
    return codes


def encode(symbols: np.ndarray, alphabet: int) -> bytes:
    """``symbols`` (ints in ``range(alphabet)``) -> header, code lengths, packed bit stream."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    if symbols.size and (symbols.min() < 0 or symbols.max() >= alphabet):
        raise ValueError(f"symbols out of range for an alphabet of {alphabet}")
    lengths = code_lengths(symbols, alphabet) if symbols.size else np.zeros(alphabet, dtype=np.int64)
    max_len = int(lengths.max()) if symbols.size else 0
    if max_len > 255:
        raise ValueError("code length above 255 bits")
    head = _HEAD.pack(symbols.size, alphabet, max_len) + lengths.astype(np.uint8).tobytes()
    if not symbols.size:
        return head
    codes, lens = canonical_codes(lengths)[symbols], lengths[symbols]
    shifts = np.arange(max_len - 1, -1, -1, dtype=np.int64)  # left-align every code in max_len bits
    bit_matrix = (((codes << (max_len - lens))[:, None] >> shifts) & 1).astype(np.uint8)
    keep = np.arange(max_len)[None, :] < lens[:, None]
    return head + np.packbits(bit_matrix[keep]).tobytes()


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Inverse of ``encode``: (symbols, bytes consumed)."""
    count, alphabet, max_len = _HEAD.unpack_from(data, 0)
    pos = _HEAD.size
    lengths = np.frombuffer(data, dtype=np.uint8, count=alphabet, offset=pos).astype(np.int64)
    pos += alphabet
    if count == 0:
        return np.zeros(0, dtype=np.int64), pos
    codes = canonical_codes(lengths)
    table = {(int(lengths[s]), int(codes[s])): int(s) for s in np.flatnonzero(lengths)}
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8, offset=pos)).tolist()
    out = np.empty(count, dtype=np.int64)
    code = length = n = used = 0
    for b in bits:
        code, length, used = (code << 1) | b, length + 1, used + 1
        sym = table.get((length, code))
        if sym is not None:
            out[n], n, code, length = sym, n + 1, 0, 0
            if n == count:
                break
    if n != count:
        raise ValueError(f"Huffman stream ended after {n} of {count} symbols")
    return out, pos + (used + 7) // 8
