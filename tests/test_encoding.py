"""Codecs of the encoded deployable format (methods/encoding)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mcbench.methods.encoding import bitpack, container, huffman, sparse


@pytest.mark.parametrize("bits", [1, 3, 5, 8, 13])
def test_bitpack_round_trip_and_size(bits):
    codes = np.random.default_rng(bits).integers(0, 1 << bits, size=1001)
    data = bitpack.pack_bits(codes, bits)
    assert len(data) == (1001 * bits + 7) // 8
    assert np.array_equal(bitpack.unpack_bits(data, bits, 1001), codes)
    with pytest.raises(ValueError):
        bitpack.pack_bits(np.array([1 << bits]), bits)


def test_bitpack_is_msb_first():
    assert bitpack.pack_bits(np.array([1, 0, 1, 1]), 2) == bytes([0b01_00_01_01])


def test_huffman_round_trip_skewed_and_shorter_than_fixed_width():
    rng = np.random.default_rng(0)
    sym = rng.choice(32, size=5000, p=np.r_[0.5, np.full(31, 0.5 / 31)])
    data = huffman.encode(sym, 32)
    out, used = huffman.decode(data)
    assert np.array_equal(out, sym) and used == len(data)
    assert len(data) < 5000 * 5 / 8 * 0.75  # entropy ~3.5 bits < 5 fixed bits


def test_huffman_codes_are_prefix_free_and_optimal_lengths():
    sym = np.repeat(np.arange(4), [8, 4, 2, 2])
    lengths = huffman.code_lengths(sym, 4)
    assert lengths.tolist() == [1, 2, 3, 3]
    codes = huffman.canonical_codes(lengths)
    words = [format(int(c), f"0{int(n)}b") for c, n in zip(codes, lengths)]
    assert not any(a != b and b.startswith(a) for a in words for b in words)


@pytest.mark.parametrize("sym", [np.array([], dtype=np.int64), np.array([3, 3, 3]), np.array([0, 7])])
def test_huffman_edge_cases(sym):
    out, _ = huffman.decode(huffman.encode(sym, 8))
    assert np.array_equal(out, sym)


def test_relative_indices_insert_filler_zeros_as_figure_2():
    # 3-bit relative index: gaps up to 8; a gap of 12 needs one filler (Fig. 2 of Han et al.)
    codes = np.zeros(20, dtype=np.int64)
    codes[[1, 4, 16]] = [5, 2, 7]
    rel, vals = sparse.to_relative(codes, 3)
    assert (rel + 1).tolist() == [2, 3, 8, 4] and vals.tolist() == [5, 2, 0, 7]
    assert np.array_equal(sparse.from_relative(rel, vals, 20), codes)


def test_relative_indices_random_round_trip():
    rng = np.random.default_rng(1)
    codes = rng.integers(1, 16, size=4000) * (rng.random(4000) < 0.03)
    for bits in (2, 4, 8):
        rel, vals = sparse.to_relative(codes, bits)
        assert rel.max() < 1 << bits
        assert np.array_equal(sparse.from_relative(rel, vals, 4000), codes)


def _shared_sparse_model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        for lin, k in ((m[0], 15), (m[3], 7)):
            book = torch.linspace(-1, 1, k)
            w = book[torch.randint(0, k, lin.weight.shape)]
            lin.weight.copy_(w * (torch.rand_like(w) < 0.1))
    return m


@pytest.mark.parametrize("huff", [True, False])
def test_container_decodes_exactly(huff):
    m = _shared_sparse_model()
    plan = {"0.weight": container.SparseCodebook(4, 5, huff), "3.weight": container.SparseCodebook(3, 5, huff)}
    data = container.encode_model(m, plan)
    d = container.decode_model(data, lambda: nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(),
                                                           nn.Linear(32, 10)))
    for k, v in m.state_dict().items():
        assert torch.equal(d.state_dict()[k], v), k
    raw = container.encode_model(m, {})
    assert len(data) < len(raw) / 3


def test_container_codebook_and_errors():
    t = torch.tensor([[-1.0, 1.0, 1.0], [1.0, -1.0, -1.0]])
    data = container.encode_state({"w": t}, {"w": container.Codebook(1)})
    assert torch.equal(container.decode_state(data)["w"], t)
    with pytest.raises(ValueError, match="distinct values"):
        container.encode_state({"w": torch.arange(5.0)}, {"w": container.Codebook(2)})
    with pytest.raises(ValueError, match="magic"):
        container.decode_state(b"PK\x03\x04 not ours")
    with pytest.raises(ValueError, match="does not have"):
        container.encode_state({"w": t}, {"v": container.Raw()})
