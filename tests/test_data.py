"""Data loading: IDX parsing, fixed splits, in-memory tensors, clear errors."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from mcbench.benchmarks import data


def _write_idx(path, arr: np.ndarray, gz: bool = True):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    blob = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(blob) if gz else blob)


def test_idx_dir_roundtrip_and_fixed_validation_split(tmp_path):
    rng = np.random.default_rng(0)
    imgs, labels = rng.integers(0, 256, (50, 4, 4)), rng.integers(0, 10, 50)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", imgs[:7], gz=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:7], gz=False)
    s = data.load_idx_dir(tmp_path, "toy", n_val=10)
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (40, 10, 7)
    assert s.x_train.dtype == torch.float32 and s.x_train.shape[1:] == (1, 4, 4) and s.x_train.max() <= 1
    assert torch.equal(s.x_test[0, 0] * 255, torch.from_numpy(imgs[0]).float())
    again = data.load_idx_dir(tmp_path, "toy", n_val=10)
    assert torch.equal(s.y_val, again.y_val)  # the validation split does not depend on any run seed


def test_bad_idx_magic(tmp_path):
    (tmp_path / "x").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(data.DatasetMissingError, match="not an unsigned-byte IDX"):
        data.read_idx(tmp_path / "x")


def test_digits_splits_are_disjoint(digits):
    x = torch.cat([digits.x_train, digits.x_val, digits.x_test]).flatten(1)
    assert (len(digits.y_train), len(digits.y_val), len(digits.y_test)) == (1197, 300, 300)
    assert len(torch.unique(x, dim=0)) >= 0.99 * len(x)  # (digits has a handful of exact duplicates)


def test_fashion_mnist_from_debian_package():
    try:
        s = data.load_fashion_mnist()
    except data.DatasetMissingError as e:
        pytest.skip(f"dataset-fashion-mnist not installed: {e}")
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (55000, 5000, 10000)
    assert s.x_train.shape[1:] == (1, 28, 28) and s.label == "fashion-mnist"
    assert torch.bincount(s.y_test).tolist() == [1000] * 10
