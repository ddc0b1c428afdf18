"""Tiny-ImageNet: the NumPy reader and the tfds builder on a miniature copy of the official layout
(3 classes, 2 train images each, 3 val images; upsampled real CIFAR-10 images as JPEGs)."""

import dataclasses
import importlib
import io
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from vit_locality.data import files, sources
from vit_locality.data.tiny_imagenet_files import read_tiny_imagenet
from vit_locality.errors import DataError
from vit_locality.validation import validate_config

from .conftest import REPO_ROOT

# Unsorted, as in the official wnids.txt; labels follow the sorted order.
WNIDS = ("n09256479", "n01443537", "n02124075")
SORTED = sorted(WNIDS)
VAL_WNIDS = ("n02124075", "n09256479", "n01443537")  # of val_0, val_1, val_2
GRAY_VAL = 1  # val_1.JPEG is a grayscale JPEG, as some official images are


@dataclasses.dataclass
class Mini:
    zip_path: pathlib.Path  # tmp/zipped/tiny-imagenet-200.zip
    unpacked: pathlib.Path  # tmp/unpacked/tiny-imagenet-200
    members: dict[str, bytes]  # path inside tiny-imagenet-200/ -> bytes
    expected: dict[str, tuple[list[str], list[int]]]  # split -> (member paths, labels) in order


def _jpeg(picture: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(picture).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _write_zip(path: pathlib.Path, members: dict[str, bytes]) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(f"tiny-imagenet-200/{name}", data)
    return path


@pytest.fixture
def mini(tmp_path, cifar10_dir) -> Mini:
    cifar, _ = files.read_cifar10(cifar10_dir, "test")
    pictures = iter(
        np.asarray(Image.fromarray(image).resize((64, 64), Image.BICUBIC)) for image in cifar
    )
    members = {
        "wnids.txt": "\n".join(WNIDS).encode() + b"\n",
        "words.txt": b"n01443537\tgoldfish, Carassius auratus\nn02124075\tEgyptian cat\n"
        b"n09256479\tcoral reef\nn00001740\tentity\n",
    }
    train = []
    for wnid in WNIDS:
        members[f"train/{wnid}/{wnid}_boxes.txt"] = f"{wnid}_2.JPEG\t0\t0\t63\t63\n".encode()
        for number in (10, 2):  # read in numeric order: _2 before _10
            train.append((SORTED.index(wnid), number, f"train/{wnid}/images/{wnid}_{number}.JPEG"))
            members[train[-1][2]] = _jpeg(next(pictures))
    annotations = []
    for i, wnid in enumerate(VAL_WNIDS):
        picture = next(pictures)
        gray = np.asarray(Image.fromarray(picture).convert("L"))
        members[f"val/images/val_{i}.JPEG"] = _jpeg(gray if i == GRAY_VAL else picture)
        annotations.append(f"val_{i}.JPEG\t{wnid}\t{i}\t2\t60\t61\n")
    members["val/val_annotations.txt"] = "".join(annotations).encode()
    members["test/images/test_0.JPEG"] = _jpeg(next(pictures))  # unlabeled: never read

    zip_path = _write_zip(tmp_path / "zipped" / "tiny-imagenet-200.zip", members)
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(tmp_path / "unpacked")
    val = [f"val/images/val_{i}.JPEG" for i in range(3)]
    return Mini(
        zip_path,
        tmp_path / "unpacked" / "tiny-imagenet-200",
        members,
        {
            "train": ([path for *_, path in sorted(train)], [label for label, *_ in sorted(train)]),
            "test": (val, [SORTED.index(w) for w in VAL_WNIDS]),
        },
    )


def _check(mini: Mini, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    paths, expected_labels = mini.expected[split]
    assert images.shape == (len(paths), 64, 64, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int32 and labels.tolist() == expected_labels
    for image, path in zip(images, paths, strict=True):
        np.testing.assert_array_equal(image, _decoded(mini.members[path]))


@pytest.mark.parametrize("where", ["zip", "folder holding the zip", "unpacked", "its parent"])
def test_reader_gives_the_images_and_sorted_wnid_labels(mini, where):
    data_dir = {
        "zip": mini.zip_path,
        "folder holding the zip": mini.zip_path.parent,
        "unpacked": mini.unpacked,
        "its parent": mini.unpacked.parent,
    }[where]
    for split in ("train", "test"):
        _check(mini, split, *read_tiny_imagenet(data_dir, split))
    images, _ = read_tiny_imagenet(data_dir, "test")
    gray = images[GRAY_VAL].astype(int)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert images[0].std() > 20  # a real picture, not a flat field


def test_files_source_reads_it_without_tensorflow(mini):
    script = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "from vit_locality.data.files import READERS\n"
        f"images, labels = READERS['tiny_imagenet'](r'{mini.zip_path}', 'test')\n"
        "print(images.shape, labels.tolist(), 'tensorflow_datasets' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split("\n")[0] == "(3, 64, 64, 3) [1, 2, 0] False"


def _without(mini: Mini, tmp_path: pathlib.Path, name: str, data: bytes | None) -> pathlib.Path:
    members = {k: v for k, v in mini.members.items() if k != name}
    if data is not None:
        members[name] = data
    return _write_zip(tmp_path / "broken" / "tiny-imagenet-200.zip", members)


@pytest.mark.parametrize(
    "name,data,message",
    [
        ("val/val_annotations.txt", None, r"val/val_annotations.txt is missing; data.dir must be"),
        ("val/images/val_2.JPEG", b"\xff\xd8\xff\xe0 not a jpeg", r"val_2.JPEG is truncated or"),
        ("val/val_annotations.txt", b"val_0.JPEG\tn00000000\n", r"line 1 is not 'val_<i>.JPEG"),
        ("wnids.txt", None, r"holds no wnids.txt; it must be the unpacked tiny-imagenet-200"),
    ],
)
def test_bad_files_give_one_line_naming_the_file(mini, tmp_path, name, data, message):
    broken = _without(mini, tmp_path, name, data)
    with pytest.raises(DataError, match=message) as error:
        read_tiny_imagenet(broken, "test")
    assert "\n" not in str(error.value)


def test_empty_dir_says_what_it_must_hold(tmp_path):
    with pytest.raises(DataError, match=r"holds no wnids.txt, tiny-imagenet-200/ or tiny-imagenet"):
        read_tiny_imagenet(tmp_path, "train")


def _config(name: str, arg: str | None = None):
    return importlib.import_module(f"configs.tiny_imagenet_{name}").get_config(arg)


def _by_pixels(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sorted by the image bytes: tfds stores examples in the order of their hashed keys."""
    order = sorted(range(len(images)), key=lambda i: images[i].tobytes())
    return images[order], labels[order]


def test_tfds_source_prepares_offline_from_the_zip_in_data_dir(mini):
    """`data.source=tfds` with data.dir holding the zip builds the tfds dataset there."""
    import tensorflow_datasets as tfds

    config = _config("baseline", "smoke")
    config.data.dir = str(mini.zip_path.parent)
    for split in ("train", "test"):
        images, labels = _by_pixels(*sources.load_split(config, split))
        expected_images, expected_labels = _by_pixels(*read_tiny_imagenet(mini.zip_path, split))
        np.testing.assert_array_equal(images, expected_images)
        np.testing.assert_array_equal(labels, expected_labels)
    builder = tfds.builder("tiny_imagenet", data_dir=config.data.dir)
    assert builder.info.features["label"].names == SORTED
    assert builder.info.splits["train"].num_examples == 6


def test_tfds_builder_downloads_when_no_manual_dir(mini, tmp_path, monkeypatch):
    """Without a manual dir, the builder asks the download manager for the official zip."""
    import tensorflow_datasets as tfds

    from vit_locality.data import tiny_imagenet

    urls = []

    def fake_download(self, url):
        urls.append(url)
        return mini.zip_path

    monkeypatch.setattr(tfds.download.DownloadManager, "download", fake_download)
    builder = tfds.builder("tiny_imagenet", data_dir=tmp_path / "tfds")
    builder.download_and_prepare()
    assert urls == [tiny_imagenet.URL]
    images, labels = tfds.as_numpy(
        tfds.load(
            "tiny_imagenet",
            split="test",
            data_dir=tmp_path / "tfds",
            batch_size=-1,
            as_supervised=True,
        )
    )
    by_label = dict(zip(labels.tolist(), images, strict=True))
    paths, expected_labels = mini.expected["test"]
    for path, label in zip(paths, expected_labels, strict=True):
        np.testing.assert_array_equal(by_label[label], _decoded(mini.members[path]))


@pytest.mark.parametrize("arg", [None, "smoke"])
def test_configs_use_patch_8_and_padding_8(arg):
    baseline, modern = _config("baseline", arg), _config("modern", arg)
    for config in (baseline, modern):
        validate_config(config, 1)
        assert config.dataset == "tiny_imagenet"
        assert (config.model.patch_size, config.aug.crop_padding) == (8, 8)  # 8x8 tokens
    assert baseline.aug.color_jitter == 0.0 and baseline.mix.prob == 0.0
    assert modern.aug.color_jitter == 0.4 and not modern.aug.autoaugment
    assert modern.mix.cutmix_alpha == 1.0 and modern.label_smoothing == 0.1
