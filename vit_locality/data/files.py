"""NumPy readers of the datasets' official files (the `files` source); no TensorFlow needed.

Each reader returns `(images, labels)`: uint8 `[N, H, W, C]` and int32 `[N]`, in file order.
A missing file or a file whose size is not a whole number of records raises `DataError` naming
the file and what the directory must hold.
"""

from __future__ import annotations

import gzip
import pathlib

import numpy as np

from vit_locality.data.tiny_imagenet_files import read_tiny_imagenet
from vit_locality.errors import DataError

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch.bin",)
CIFAR_PIXELS = 32 * 32 * 3


def _require(path: pathlib.Path, what: str) -> pathlib.Path:
    if not path.is_file():
        raise DataError(f"data.dir: {path} is missing; the directory must hold {what}")
    return path


def _read_cifar_records(
    path: pathlib.Path, label_bytes: int, label_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR binary file: records of `label_bytes` label bytes then 3072 pixel bytes
    (R, G, B planes of 32x32, row-major)."""
    raw = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + CIFAR_PIXELS
    if raw.size == 0 or raw.size % record:
        raise DataError(
            f"data.dir: {path} is truncated or corrupt: {raw.size} bytes is not a whole number "
            f"of {record}-byte CIFAR records"
        )
    raw = raw.reshape(-1, record)
    labels = raw[:, label_index].astype(np.int32)
    images = raw[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _cifar_dir(data_dir: pathlib.Path, subdir: str) -> pathlib.Path:
    """Accepts the official folder itself or the folder that contains it."""
    return data_dir / subdir if (data_dir / subdir).is_dir() else data_dir


def read_cifar10(data_dir: str | pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from `cifar-10-batches-bin` (or the folder holding it); split train or test."""
    root = _cifar_dir(pathlib.Path(data_dir), "cifar-10-batches-bin")
    names = CIFAR10_TRAIN_FILES if split == "train" else CIFAR10_TEST_FILES
    layout = "data_batch_1.bin .. data_batch_5.bin and test_batch.bin (cifar-10-batches-bin)"
    parts = [_read_cifar_records(_require(root / n, layout), 1, 0) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_cifar100(data_dir: str | pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-100 fine labels from `cifar-100-binary` (or the folder holding it)."""
    root = _cifar_dir(pathlib.Path(data_dir), "cifar-100-binary")
    path = _require(root / f"{split}.bin", "train.bin and test.bin (cifar-100-binary)")
    return _read_cifar_records(path, label_bytes=2, label_index=1)


def _read_idx(path: pathlib.Path, magic: int) -> np.ndarray:
    """An IDX file (optionally gzipped): big-endian magic, dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"data.dir: {path} is truncated or corrupt ({e})") from e
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise DataError(f"data.dir: {path} is not an IDX file with magic number {magic}")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(dims)):
        raise DataError(
            f"data.dir: {path} is truncated or corrupt: {data.size} bytes of data, "
            f"the header promises {dims}"
        )
    return data.reshape(dims)


def read_fashion_mnist(data_dir: str | pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST from the IDX files (gzipped or not), images [N, 28, 28, 1]."""
    root = pathlib.Path(data_dir)
    prefix = "train" if split == "train" else "t10k"
    layout = "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    layout += "t10k-labels-idx1-ubyte.gz"

    def find(stem: str) -> pathlib.Path:
        for name in (f"{stem}.gz", stem):
            if (root / name).is_file():
                return root / name
        return _require(root / f"{stem}.gz", layout)

    images = _read_idx(find(f"{prefix}-images-idx3-ubyte"), 2051)
    labels = _read_idx(find(f"{prefix}-labels-idx1-ubyte"), 2049)
    if len(images) != len(labels):
        raise DataError(f"data.dir: {root} holds {len(images)} images but {len(labels)} labels")
    return images[..., None].copy(), labels.astype(np.int32)


READERS = {
    "cifar10": read_cifar10,
    "cifar100": read_cifar100,
    "fashion_mnist": read_fashion_mnist,
    "tiny_imagenet": read_tiny_imagenet,
}
