"""A small binary file of named tensors: each raw, codebook + bit-packed, or sparse + Huffman.

Layout: ``MAGIC``, a little-endian uint32 header length, a compact JSON header (one entry per
tensor: name, codec, dtype, shape, payload length), then the payloads back to back. Nothing
is pickled; decoding reads numbers only. Like ``torch.save(state_dict)`` the file holds the
weights, not the architecture: ``decode_model`` fills a fresh model from a builder.

Codecs (``plan`` maps tensor names to one; unnamed tensors are stored raw):
``Raw``               the tensor's bytes as they are.
``Codebook(bits)``    at most 2**bits distinct values: float32 codebook + b-bit packed indices.
``SparseCodebook``    Deep Compression's format: a codebook whose index 0 is exact zero, the
                      nonzeros as relative indices with filler zeros (``sparse``), and both the
                      relative indices and the value indices Huffman coded (or bit-packed when
                      ``huffman=False``, the paper's "P+Q" stage).
``SparseFloat``       unstructured pruning without quantization: the float32 nonzeros in order,
                      their relative indices (Huffman coded or bit-packed) and one bit per stored
                      entry telling a real nonzero from a filler.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np
import torch
from torch import nn

from mcbench.methods.encoding import bitpack, huffman, sparse

MAGIC = b"MCBENC1\n"
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class Raw:
    pass


@dataclass(frozen=True)
class Codebook:
    bits: int


@dataclass(frozen=True)
class SparseCodebook:
    bits: int          # value index width: 2**bits codebook entries, entry 0 is zero
    index_bits: int    # relative index width (gap - 1)
    huffman: bool = True


@dataclass(frozen=True)
class SparseFloat:
    index_bits: int    # relative index width (gap - 1)
    huffman: bool = True


Codec = Union[Raw, Codebook, SparseCodebook, SparseFloat]


def _codebook(values: np.ndarray, size: int, zero_first: bool) -> tuple[np.ndarray, np.ndarray]:
    """(codebook float32, index of every value); ``zero_first`` reserves index 0 for exact zero."""
    uniq = np.unique(values[values != 0]) if zero_first else np.unique(values)
    book = np.concatenate([[0.0], uniq]).astype(values.dtype) if zero_first else uniq
    if len(book) > size:
        raise ValueError(f"{len(book)} distinct values do not fit a codebook of {size}")
    idx = np.searchsorted(uniq, values)
    return book, (np.where(values != 0, idx + 1, 0) if zero_first else idx)


def _stream(symbols: np.ndarray, bits: int, use_huffman: bool) -> bytes:
    if use_huffman:
        return huffman.encode(symbols, 1 << bits)
    return _U32.pack(len(symbols)) + bitpack.pack_bits(symbols, bits)


def _unstream(data: bytes, bits: int, use_huffman: bool) -> tuple[np.ndarray, int]:
    if use_huffman:
        return huffman.decode(data)
    (n,) = _U32.unpack_from(data, 0)
    nbytes = (n * bits + 7) // 8
    return bitpack.unpack_bits(data[4:4 + nbytes], bits, n), 4 + nbytes


def _encode_tensor(a: np.ndarray, codec: Codec) -> bytes:
    if isinstance(codec, Raw):
        return a.tobytes()
    flat = a.ravel()
    if isinstance(codec, Codebook):
        book, idx = _codebook(flat, 1 << codec.bits, zero_first=False)
        return _U32.pack(len(book)) + book.astype("<f4").tobytes() + bitpack.pack_bits(idx, codec.bits)
    if isinstance(codec, SparseFloat):
        rel, real = sparse.to_relative((flat != 0).astype(np.int64), codec.index_bits)
        nz = flat[flat != 0].astype("<f4")
        return (_U32.pack(len(nz)) + nz.tobytes() + _stream(rel, codec.index_bits, codec.huffman)
                + _stream(real, 1, False))
    book, idx = _codebook(flat, 1 << codec.bits, zero_first=True)
    rel, vals = sparse.to_relative(idx, codec.index_bits)
    return (_U32.pack(len(book)) + book.astype("<f4").tobytes()
            + _stream(rel, codec.index_bits, codec.huffman) + _stream(vals, codec.bits, codec.huffman))


def _decode_tensor(data: bytes, codec: dict, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    numel = int(np.prod(shape))
    if codec["k"] == "raw":
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    if codec["k"] == "sparse-float":
        (k,) = _U32.unpack_from(data, 0)
        nz = np.frombuffer(data, dtype="<f4", count=k, offset=4).astype(dtype)
        rest = data[4 + 4 * k:]
        rel, used = _unstream(rest, codec["i"], codec["h"])
        real, _ = _unstream(rest[used:], 1, False)
        out = np.zeros(numel, dtype=dtype)
        out[sparse.from_relative(rel, real, numel) != 0] = nz
        return out.reshape(shape)
    (k,) = _U32.unpack_from(data, 0)
    book = np.frombuffer(data, dtype="<f4", count=k, offset=4).astype(dtype)
    rest = data[4 + 4 * k:]
    if codec["k"] == "codebook":
        return book[bitpack.unpack_bits(rest, codec["b"], numel)].reshape(shape)
    rel, used = _unstream(rest, codec["i"], codec["h"])
    vals, _ = _unstream(rest[used:], codec["b"], codec["h"])
    return book[sparse.from_relative(rel, vals, numel)].reshape(shape)


def _describe(codec: Codec) -> dict:
    if isinstance(codec, Raw):
        return {"k": "raw"}
    if isinstance(codec, Codebook):
        return {"k": "codebook", "b": codec.bits}
    if isinstance(codec, SparseFloat):
        return {"k": "sparse-float", "i": codec.index_bits, "h": codec.huffman}
    return {"k": "sparse", "b": codec.bits, "i": codec.index_bits, "h": codec.huffman}


def encode_state(state: dict[str, torch.Tensor], plan: dict[str, Codec]) -> bytes:
    """Encode every tensor of ``state``; ``plan`` names the non-raw codecs."""
    unknown = sorted(set(plan) - set(state))
    if unknown:
        raise ValueError(f"encoding plan names tensors the model does not have: {unknown}")
    header, payloads = [], []
    for name, t in state.items():
        a = t.detach().cpu().contiguous().numpy()
        codec = plan.get(name, Raw())
        blob = _encode_tensor(a, codec)
        header.append({"n": name, "d": a.dtype.str, "s": list(a.shape), "len": len(blob), **_describe(codec)})
        payloads.append(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + _U32.pack(len(head)) + head + b"".join(payloads)


def decode_state(data: bytes) -> dict[str, torch.Tensor]:
    if not data.startswith(MAGIC):
        raise ValueError("not an mcbench encoded model (bad magic)")
    (hlen,) = _U32.unpack_from(data, len(MAGIC))
    pos = len(MAGIC) + 4
    header = json.loads(data[pos:pos + hlen])
    pos += hlen
    state = {}
    for e in header:
        blob = data[pos:pos + e["len"]]
        pos += e["len"]
        state[e["n"]] = torch.from_numpy(_decode_tensor(blob, e, np.dtype(e["d"]), tuple(e["s"])))
    return state


def encode_model(model: nn.Module, plan: dict[str, Codec]) -> bytes:
    return encode_state(model.state_dict(), plan)


def decode_model(data: bytes, build: Callable[[], nn.Module]) -> nn.Module:
    """A fresh model from ``build`` holding exactly the decoded tensors (every key must be present)."""
    model = build()
    model.load_state_dict(decode_state(data), strict=True)
    return model.eval()


def payload_sizes(data: bytes) -> dict[str, int]:
    """Bytes each tensor's payload takes in an encoded file (the header is not attributed)."""
    (hlen,) = _U32.unpack_from(data, len(MAGIC))
    header = json.loads(data[len(MAGIC) + 4:len(MAGIC) + 4 + hlen])
    return {e["n"]: e["len"] for e in header}
