"""Fixed-width bit-packing of unsigned integer codes (1 <= bits <= 32), MSB first."""
from __future__ import annotations

import numpy as np


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """Pack ``codes`` (each < 2**bits) into ``ceil(len * bits / 8)`` bytes."""
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in 1..32, got {bits}")
    codes = np.asarray(codes, dtype=np.int64).ravel()
    if codes.size and (codes.min() < 0 or codes.max() >= 1 << bits):
        raise ValueError(f"codes out of range for {bits} bits")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    bit_matrix = ((codes[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bit_matrix.ravel()).tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of ``pack_bits``: the first ``count`` codes as int64."""
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits]
    if flat.size < count * bits:
        raise ValueError(f"{len(data)} bytes hold fewer than {count} codes of {bits} bits")
    weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))
    return flat.reshape(count, bits).astype(np.int64) @ weights
