"""Tiny-ImageNet (200 classes, 64x64 RGB, 100,000 train and 10,000 val images) from its official
files: a NumPy reader for the `files` source and the tfds builder `tiny_imagenet`, which the tfds
catalog lacks.

The official layout (tiny-imagenet-200.zip unpacks to the folder `tiny-imagenet-200`):

    wnids.txt                             the 200 WordNet ids, one per line
    words.txt                             wnid <TAB> words, for all of ImageNet: not read
    train/<wnid>/images/<wnid>_<i>.JPEG   500 per class (train/<wnid>/<wnid>_boxes.txt not read)
    val/images/val_<i>.JPEG               10,000
    val/val_annotations.txt               filename <TAB> wnid <TAB> x0 <TAB> y0 <TAB> x1 <TAB> y1
    test/images/test_<i>.JPEG             unlabeled: not read

Conventions (both give the same images and labels; tfds stores them in its own order):
  * label = index of the image's wnid in the wnids of wnids.txt sorted as strings (the order of
    torchvision's ImageFolder on train/); the tfds ClassLabel names are these sorted wnids.
  * split "train" is train/, in label order, then by image number i; split "test" is the
    official val/ (the test images have no labels), in the order of val_annotations.txt.
  * grayscale (and CMYK) JPEGs are converted to RGB with Pillow, so every image is uint8
    [64, 64, 3].

This module needs Pillow and NumPy only (the `files` source); the tfds builder, which needs
TensorFlow, is `vit_locality.data.tiny_imagenet`.
"""

from __future__ import annotations

import concurrent.futures
import io
import pathlib
import re
import zipfile

import numpy as np
from PIL import Image

from vit_locality.errors import DataError

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
IMAGE_SHAPE = (64, 64, 3)
LAYOUT = (
    "the unpacked tiny-imagenet-200 directory (wnids.txt, train/<wnid>/images/*.JPEG, "
    "val/images/*.JPEG, val/val_annotations.txt), its parent, or tiny-imagenet-200.zip"
)
_ANNOTATIONS = "val/val_annotations.txt"
_CHUNK = 256  # images decoded per thread-pool task


class TinyImagenetSource:
    """The dataset's files, unpacked in a directory or inside the zip; paths are relative to the
    `tiny-imagenet-200` folder and use "/"."""

    def __init__(self, location: pathlib.Path):
        self._root = location
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""  # in the zip: the folder that holds wnids.txt, e.g. "tiny-imagenet-200/"
        self._listing: dict[str, list[str]] = {}  # in the zip: folder -> names of its files
        if location.is_dir():
            return
        try:
            self._zip = zipfile.ZipFile(location)
        except (OSError, zipfile.BadZipFile) as e:
            raise DataError(f"data.dir: {location} is not a readable zip file ({e})") from e
        names = self._zip.namelist()
        tops = [n for n in names if n.rpartition("/")[2] == "wnids.txt"]
        if not tops:
            raise DataError(f"data.dir: {location} holds no wnids.txt; it must be {LAYOUT}")
        self._prefix = min(tops, key=len)[: -len("wnids.txt")]
        for name in names:
            if name.startswith(self._prefix) and not name.endswith("/"):
                folder, _, base = name[len(self._prefix) :].rpartition("/")
                self._listing.setdefault(folder, []).append(base)

    def __enter__(self) -> TinyImagenetSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._zip is not None:
            self._zip.close()

    def name(self, path: str) -> str:
        """How errors name the file `path`."""
        if self._zip is None:
            return str(self._root / path)
        return f"{self._root}:{self._prefix}{path}"

    def missing(self, path: str) -> DataError:
        return DataError(f"data.dir: {self.name(path)} is missing; data.dir must be {LAYOUT}")

    def read(self, path: str) -> bytes:
        """The bytes of the file `path`; thread-safe."""
        try:
            if self._zip is None:
                return (self._root / path).read_bytes()
            return self._zip.read(self._prefix + path)
        except (FileNotFoundError, KeyError) as e:
            raise self.missing(path) from e
        except (OSError, zipfile.BadZipFile) as e:
            raise DataError(f"data.dir: {self.name(path)} is unreadable ({e})") from e

    def lines(self, path: str) -> list[str]:
        """The non-empty lines of the text file `path`."""
        text = self.read(path).decode("utf-8", errors="replace")
        return [line for line in text.splitlines() if line.strip()]

    def list_dir(self, folder: str) -> list[str]:
        """Names of the files directly in `folder`; raises DataError when there are none."""
        if self._zip is not None:
            names = self._listing.get(folder, [])
        elif (self._root / folder).is_dir():
            names = [p.name for p in (self._root / folder).iterdir() if p.is_file()]
        else:
            names = []
        if not names:
            raise self.missing(folder + "/")
        return names


def locate(data_dir: pathlib.Path) -> pathlib.Path | None:
    """The unpacked `tiny-imagenet-200` folder or the zip that `data_dir` is or holds, or None."""
    if data_dir.is_file():
        return data_dir
    for folder in (data_dir, data_dir / "tiny-imagenet-200"):
        if (folder / "wnids.txt").is_file():
            return folder
    zipped = data_dir / "tiny-imagenet-200.zip"
    return zipped if zipped.is_file() else None


def open_source(data_dir: str | pathlib.Path) -> TinyImagenetSource:
    location = locate(pathlib.Path(data_dir))
    if location is None:
        raise DataError(
            f"data.dir: {data_dir} holds no wnids.txt, tiny-imagenet-200/ or "
            f"tiny-imagenet-200.zip; it must be {LAYOUT}"
        )
    return TinyImagenetSource(location)


def sorted_wnids(source: TinyImagenetSource) -> list[str]:
    """The class ids of wnids.txt, sorted: label i is the i-th of them."""
    wnids = sorted(line.strip() for line in source.lines("wnids.txt"))
    if len(set(wnids)) != len(wnids):
        raise DataError(f"data.dir: {source.name('wnids.txt')} repeats a class id")
    return wnids


def _image_number(name: str) -> int:
    """`n01443537_12.JPEG` -> 12."""
    match = re.search(r"_(\d+)\.JPEG$", name, re.IGNORECASE)
    return int(match.group(1)) if match else -1


def index_split(
    source: TinyImagenetSource, split: str, wnids: list[str]
) -> tuple[list[str], np.ndarray]:
    """The image paths of `split` and their labels (int32 [N]), in the documented order."""
    paths: list[str] = []
    labels: list[int] = []
    if split == "train":
        for label, wnid in enumerate(wnids):
            folder = f"train/{wnid}/images"
            names = [n for n in source.list_dir(folder) if n.lower().endswith(".jpeg")]
            names.sort(key=lambda n: (_image_number(n), n))
            paths += [f"{folder}/{n}" for n in names]
            labels += [label] * len(names)
        return paths, np.asarray(labels, np.int32)
    label_of = {wnid: i for i, wnid in enumerate(wnids)}
    for number, line in enumerate(source.lines(_ANNOTATIONS), start=1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1].strip() not in label_of:
            raise DataError(
                f"data.dir: {source.name(_ANNOTATIONS)} line {number} is not "
                f"'val_<i>.JPEG<TAB><wnid from wnids.txt><TAB>...': {line[:80]!r}"
            )
        paths.append(f"val/images/{fields[0].strip()}")
        labels.append(label_of[fields[1].strip()])
    return paths, np.asarray(labels, np.int32)


def decode_image(source: TinyImagenetSource, path: str) -> np.ndarray:
    """The image at `path` as uint8 [64, 64, 3] RGB."""
    try:
        with Image.open(io.BytesIO(source.read(path))) as image:
            array = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"data.dir: {source.name(path)} is truncated or corrupt ({e})") from e
    if array.shape != IMAGE_SHAPE:
        raise DataError(
            f"data.dir: {source.name(path)} is {array.shape[1]}x{array.shape[0]} pixels; "
            f"Tiny-ImageNet images are 64x64"
        )
    return array


def _decode_all(source: TinyImagenetSource, paths: list[str]) -> np.ndarray:
    """uint8 [N, 64, 64, 3]: decoded by a thread pool (Pillow and zlib release the GIL)."""
    images = np.empty((len(paths), *IMAGE_SHAPE), np.uint8)

    def decode_chunk(start: int) -> None:
        for i in range(start, min(start + _CHUNK, len(paths))):
            images[i] = decode_image(source, paths[i])

    with concurrent.futures.ThreadPoolExecutor() as pool:
        for _ in pool.map(decode_chunk, range(0, len(paths), _CHUNK)):
            pass  # re-raises the first DataError
    return images


def read_tiny_imagenet(data_dir: str | pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Tiny-ImageNet from its official files, without TensorFlow.

    Args:
      data_dir: the unpacked `tiny-imagenet-200` folder, the folder that holds it or
        `tiny-imagenet-200.zip`, or the zip itself (read in place, not unpacked).
      split: "train", or "test" for the official val images.

    Returns:
      images uint8 [N, 64, 64, 3] (RGB) and labels int32 [N] in [0, number of wnids).
    """
    with open_source(data_dir) as source:
        paths, labels = index_split(source, split, sorted_wnids(source))
        return _decode_all(source, paths), labels
