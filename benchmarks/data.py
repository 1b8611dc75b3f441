"""Datasets as in-memory tensors (no per-sample Python work during training).

Every loader returns a ``Splits`` of float32 images in [0, 1] (N, C, H, W),
normalised later by the task, plus int64 labels. Validation is a fixed,
seeded slice of the official training set; the test split is never used for
selection.
"""
from __future__ import annotations

import gzip
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

VAL_SPLIT_SEED = 20240601  # fixed: the validation split never changes with the run seed


class DatasetMissingError(RuntimeError):
    """A dataset's files are not where they should be; the message says how to get them."""


@dataclass
class Splits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    label: str  # what was really loaded, e.g. "fashion-mnist" or "digits (fallback)"

    def summary(self) -> str:
        return (f"{self.label}: train {len(self.y_train)}, val {len(self.y_val)}, test {len(self.y_test)}, "
                f"input {tuple(self.x_train.shape[1:])}, {self.num_classes} classes")


def _holdout(x: torch.Tensor, y: torch.Tensor, n_val: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(VAL_SPLIT_SEED)
    perm = torch.randperm(len(y), generator=g)
    val, train = perm[:n_val], perm[n_val:]
    return x[train], y[train], x[val], y[val]


# --------------------------------------------------------------------------- IDX (Fashion-MNIST, MNIST)
def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), checking its magic number and size."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DatasetMissingError(f"cannot read {path}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetMissingError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DatasetMissingError(f"{path} is truncated: {len(data) - offset} bytes of {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _find_idx(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).exists():
            return root / name
    raise DatasetMissingError(f"{root}/{stem}(.gz) not found")


def load_idx_dir(root: Path, label: str, n_val: int = 5000) -> Splits:
    root = Path(root)
    xs = {s: read_idx(_find_idx(root, f"{s}-images-idx3-ubyte")) for s in ("train", "t10k")}
    ys = {s: read_idx(_find_idx(root, f"{s}-labels-idx1-ubyte")) for s in ("train", "t10k")}
    to_x = lambda a: torch.from_numpy(a.copy()).float().div_(255.0).unsqueeze(1)  # noqa: E731
    to_y = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    x_tr, y_tr, x_va, y_va = _holdout(to_x(xs["train"]), to_y(ys["train"]), n_val)
    return Splits(x_tr, y_tr, x_va, y_va, to_x(xs["t10k"]), to_y(ys["t10k"]), 10, label)


def fashion_mnist_dir() -> Path:
    """Where Debian's ``dataset-fashion-mnist`` put the IDX files (found via ``dpkg -L``)."""
    try:
        out = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        raise DatasetMissingError(
            "Fashion-MNIST not found: install Debian's package `dataset-fashion-mnist` "
            "(as root: apt-get install dataset-fashion-mnist), or use --task digits"
        ) from None
    for line in out.splitlines():
        if line.endswith("train-images-idx3-ubyte.gz") or line.endswith("train-images-idx3-ubyte"):
            return Path(line).parent
    raise DatasetMissingError("dataset-fashion-mnist is installed but lists no train-images-idx3-ubyte file")


def load_fashion_mnist(n_val: int = 5000) -> Splits:
    return load_idx_dir(fashion_mnist_dir(), "fashion-mnist", n_val)


# --------------------------------------------------------------------------- digits (tiny, for tests)
def load_digits(n_val: int = 300, n_test: int = 300) -> Splits:
    """scikit-learn's bundled 8x8 digits (1,797 images), split train/val/test with a fixed seed."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    g = torch.Generator().manual_seed(VAL_SPLIT_SEED)
    perm = torch.randperm(len(y), generator=g)
    te, va, tr = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
    return Splits(x[tr], y[tr], x[va], y[va], x[te], y[te], 10, "digits")


# --------------------------------------------------------------------------- user data via torchvision
def _dataset_to_tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
    """Materialise a torchvision dataset once (this is the only per-sample loop, at load time).

    An image that cannot be decoded (PIL errors are ``OSError``s) or converted ends the load with a
    ``DatasetMissingError`` naming the file.
    """
    from torchvision.transforms.functional import pil_to_tensor

    xs, ys = [], []
    for i in range(len(ds)):
        try:
            img, target = ds[i]
            t = pil_to_tensor(img) if not isinstance(img, torch.Tensor) else img
        except (OSError, ValueError, TypeError, RuntimeError) as e:
            where = ds.samples[i][0] if hasattr(ds, "samples") else f"sample {i}"
            raise DatasetMissingError(f"cannot read image {where}: {e}") from None
        xs.append(t)
        ys.append(int(target))
    return torch.stack(xs).float().div_(255.0), torch.tensor(ys, dtype=torch.int64)


def _require_dir(path: Path | None, name: str) -> Path:
    if path is None:
        raise DatasetMissingError(f"task {name} needs --data-dir PATH (local files; nothing is downloaded)")
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetMissingError(f"{name}: data directory {path} does not exist")
    return path


def load_mnist(root: Path | None, n_val: int = 5000) -> Splits:
    root = _require_dir(root, "mnist")
    for cand in (root, root / "MNIST" / "raw", root / "raw"):
        if (cand / "train-images-idx3-ubyte").exists() or (cand / "train-images-idx3-ubyte.gz").exists():
            return load_idx_dir(cand, "mnist", n_val)
    raise DatasetMissingError(f"mnist: no train-images-idx3-ubyte(.gz) under {root} (or {root}/MNIST/raw)")


def load_cifar10(root: Path | None, n_val: int = 5000) -> Splits:
    from torchvision.datasets import CIFAR10

    root = _require_dir(root, "cifar10")
    try:
        train = CIFAR10(str(root), train=True, download=False)
        test = CIFAR10(str(root), train=False, download=False)
    except RuntimeError as e:
        raise DatasetMissingError(f"cifar10: {e} (expected {root}/cifar-10-batches-py)") from None
    xtr = torch.from_numpy(train.data).permute(0, 3, 1, 2).float().div_(255.0)
    xte = torch.from_numpy(test.data).permute(0, 3, 1, 2).float().div_(255.0)
    x_tr, y_tr, x_va, y_va = _holdout(xtr, torch.tensor(train.targets), n_val)
    return Splits(x_tr, y_tr, x_va, y_va, xte, torch.tensor(test.targets), 10, "cifar10")


def load_imagefolder(root: Path | None, image_size: int = 64, val_fraction: float = 0.1) -> Splits:
    """ImageFolder with ``train/`` and ``test/`` sub-folders, resized once to ``image_size``."""
    from torchvision import transforms

    root = _require_dir(root, "imagefolder")
    for sub in ("train", "test"):
        if not (root / sub).is_dir():
            raise DatasetMissingError(f"imagefolder: expected {root}/{sub}/<class>/<image> folders")
    tf = transforms.Compose([transforms.Resize((image_size, image_size)), transforms.PILToTensor()])
    train, test = (_image_folder(root / sub, tf) for sub in ("train", "test"))
    if train.classes != test.classes:
        raise DatasetMissingError(f"imagefolder: train/ and test/ have different class folders "
                                  f"({', '.join(train.classes)} vs {', '.join(test.classes)})")
    if len(train) < 2:
        raise DatasetMissingError(f"imagefolder: {root}/train holds {len(train)} image(s); "
                                  "a validation split needs at least 2")
    xtr, ytr = _dataset_to_tensors(train)
    xte, yte = _dataset_to_tensors(test)
    x_tr, y_tr, x_va, y_va = _holdout(xtr, ytr, max(1, int(len(ytr) * val_fraction)))
    return Splits(x_tr, y_tr, x_va, y_va, xte, yte, len(train.classes), "imagefolder")


def _image_folder(path: Path, transform):
    """torchvision's ImageFolder; no class folder or no image becomes a one-line ``DatasetMissingError``."""
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(path), transform=transform)
    except OSError as e:  # FileNotFoundError: no class folder, or no image in any
        raise DatasetMissingError(f"imagefolder: {path}: {e}") from None
