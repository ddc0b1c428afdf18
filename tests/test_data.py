"""Data: the official-file readers, the eval input, and the step-indexed tf.data train input."""

import gzip
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from vit_locality.data import files
from vit_locality.data.eval_input import eval_batches
from vit_locality.data.sources import load_split
from vit_locality.errors import DataError

from .conftest import CIFAR100_SAMPLE, FASHION_MNIST, REPO_ROOT


def test_cifar10_reader_matches_the_record_layout(cifar10_dir):
    images, labels = files.read_cifar10(cifar10_dir, "test")
    assert images.shape == (1017, 32, 32, 3) and images.dtype == np.uint8
    raw = np.fromfile(cifar10_dir / "test_batch.bin", np.uint8)[: 2 * 3073]
    assert labels[0] == raw[0] == 3 and labels[1] == raw[3073] == 8  # cat, ship
    np.testing.assert_array_equal(images[1, :, :, 0].ravel(), raw[3074 : 3074 + 1024])  # R plane
    np.testing.assert_array_equal(images[1, :, :, 2].ravel(), raw[3074 + 2048 : 3074 + 3072])
    train_images, train_labels = files.read_cifar10(cifar10_dir, "train")
    assert train_images.shape == (5085, 32, 32, 3)
    assert set(np.unique(train_labels)) == set(range(10))


def test_cifar100_reader_uses_fine_labels():
    if not (CIFAR100_SAMPLE / "test.bin").exists():
        pytest.skip("CIFAR-100 sample absent")
    images, labels = files.read_cifar100(CIFAR100_SAMPLE, "test")
    raw = np.fromfile(CIFAR100_SAMPLE / "test.bin", np.uint8)
    assert images.shape == (148, 32, 32, 3)
    np.testing.assert_array_equal(labels, raw.reshape(148, 3074)[:, 1])
    assert labels[0] == 49  # mountain


def test_fashion_mnist_reader():
    if not (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST absent")
    images, labels = files.read_fashion_mnist(FASHION_MNIST, "test")
    assert images.shape == (10000, 28, 28, 1) and labels.shape == (10000,)
    assert labels[0] == 9 and np.bincount(labels).tolist() == [1000] * 10


def test_truncated_cifar_file_is_named(tmp_path, cifar10_dir):
    for name in files.CIFAR10_TRAIN_FILES:
        (tmp_path / name).write_bytes((cifar10_dir / name).read_bytes())
    (tmp_path / "test_batch.bin").write_bytes((cifar10_dir / "test_batch.bin").read_bytes()[:-7])
    with pytest.raises(DataError, match=r"test_batch.bin is truncated or corrupt"):
        files.read_cifar10(tmp_path, "test")


def test_missing_files_say_what_the_directory_must_hold(tmp_path):
    with pytest.raises(DataError, match=r"data.dir: .*test_batch.bin is missing.*must hold"):
        files.read_cifar10(tmp_path, "test")
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03xx"))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01"))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        files.read_fashion_mnist(tmp_path, "test")


def tfds_config(dataset, data_dir):
    return ml_collections.ConfigDict(
        {"dataset": dataset, "data": {"source": "tfds", "dir": str(data_dir)}}
    )


def test_tfds_offline_says_so_at_once_without_a_download(tmp_path, unreachable_downloads):
    """A dataset not prepared in the tfds data dir, its download host unreachable: one line
    naming the host and the `files` source, before tfds is asked to download anything (it
    retried for 3.5 minutes)."""
    port, prepared = unreachable_downloads
    with pytest.raises(DataError) as error:
        load_split(tfds_config("cifar100", tmp_path), "train")
    assert str(error.value) == (
        f"dataset cifar100: tfds would download it from 127.0.0.1:{port}, which cannot be "
        "reached (Connection refused). Offline, use the local files: --config.data.source=files "
        "--config.data.dir=PATH where PATH holds the official cifar-100-binary files (train.bin, "
        "test.bin)"
    )
    assert prepared == []


def test_a_prepared_tfds_dataset_is_loaded_without_reaching_its_host(
    tmp_path, unreachable_downloads
):
    """Prepared in the data dir (its dataset_info.json there), the dataset goes to tfds without
    the host check (which would refuse it), and tfds reads it without a download; this one's
    info has no splits, so tfds' own error comes back."""
    import tensorflow_datasets as tfds

    _, prepared = unreachable_downloads
    builder = tfds.builder("cifar10", data_dir=tmp_path)
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)
    with pytest.raises(DataError, match=r"^dataset cifar10: tfds could not load it \("):
        load_split(tfds_config("cifar10", tmp_path), "test")
    assert prepared == []


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_eval_visits_every_example_once(processes):
    n, batch = 37, 8
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    labels = np.arange(n, dtype=np.int32)
    seen = []
    for p in range(processes):
        for b in eval_batches(
            images, labels, global_batch_size=batch, process_index=p, process_count=processes
        ):
            assert b["image"].shape == (batch // processes, 2, 2, 1)
            seen.extend(b["label"][b["mask"]].tolist())
            assert (b["image"][~b["mask"]] == 0).all()
    assert sorted(seen) == list(range(n))


def _baseline_aug(**overrides):
    from configs import common
    from vit_locality.data.augment import make_train_augment

    config = common.get_config("cifar10")
    config.aug.update(overrides)
    return make_train_augment(config)


def _batches(images, labels, **kwargs):
    from vit_locality.data.train_input import train_batches

    defaults = dict(augment=_baseline_aug(), global_batch_size=8, total_steps=12, seed=0)
    return list(train_batches(images, labels, **(defaults | kwargs)))


def _tagged_images(n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Image i is constant (i + 1) * 10, so crops show their source; label i."""
    images = (np.arange(1, n + 1, dtype=np.uint8) * 10)[:, None, None, None]
    return images * np.ones((1, 8, 8, 3), np.uint8), np.arange(n, dtype=np.int32)


def test_train_input_epochs_are_permutations_and_resume_exactly():
    images, labels = _tagged_images()
    full = _batches(images, labels, start_step=0)
    assert len(full) == 12
    steps_per_epoch = 20 // 8  # 2 full batches, the remainder dropped
    for epoch in range(6):
        seen = np.concatenate([full[s]["label"] for s in range(2 * epoch, 2 * epoch + 2)])
        assert len(set(seen.tolist())) == 16  # no repeats inside an epoch
    assert not np.array_equal(full[0]["label"], full[steps_per_epoch]["label"])
    resumed = _batches(images, labels, start_step=5)
    assert len(resumed) == 7
    for a, b in zip(full[5:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_each_process_reads_its_rows_of_the_global_batch():
    images, labels = _tagged_images()
    whole = _batches(images, labels, start_step=3, total_steps=6)
    halves = [
        _batches(images, labels, start_step=3, total_steps=6, process_index=p, process_count=2)
        for p in range(2)
    ]
    for s in range(3):
        np.testing.assert_array_equal(
            np.concatenate([halves[0][s]["image"], halves[1][s]["image"]]), whole[s]["image"]
        )


def test_crop_and_flip_semantics():
    """A crop of a zero-padded image keeps the original values and a zero border of at most
    `padding` rows and columns; without padding and flip, images pass through unchanged."""
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(16, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(16, dtype=np.int32)
    plain = _batches(
        images,
        labels,
        augment=_baseline_aug(crop_padding=0, flip=False),
        start_step=0,
        total_steps=2,
        global_batch_size=16,
    )
    np.testing.assert_array_equal(plain[0]["image"], images[plain[0]["label"]])
    flips = _batches(
        images,
        labels,
        augment=_baseline_aug(crop_padding=0),
        start_step=0,
        total_steps=8,
        global_batch_size=16,
    )
    flipped = [
        np.array_equal(b["image"][i], images[label][:, ::-1])
        for b in flips
        for i, label in enumerate(b["label"])
    ]
    assert 0.3 < np.mean(flipped) < 0.7
    crops = _batches(
        images,
        labels,
        augment=_baseline_aug(flip=False),
        start_step=0,
        total_steps=8,
        global_batch_size=16,
    )
    for b in crops:
        for image, label in zip(b["image"], b["label"], strict=True):
            padded = np.pad(images[label], ((4, 4), (4, 4), (0, 0)))
            windows = [padded[y : y + 8, x : x + 8] for y in range(9) for x in range(9)]
            assert any(np.array_equal(image, w) for w in windows)


def test_the_tensorflow_input_path_writes_nothing_to_stderr():
    """TensorFlow prints two lines at import on CPUs with AVX512_BF16 (oneDNN's custom operations)
    unless the package has set its environment first; errors must stay one line on any CPU."""
    script = (
        "import numpy as np\n"
        "from configs import common\n"
        "from vit_locality.data.augment import make_train_augment\n"
        "config = common.experiment('cifar10', 'modern', None)\n"
        "config.aug.color_jitter = 0.4\n"
        "image = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)\n"
        "out = make_train_augment(config)(image, np.array([0, 1], np.int64))\n"
        "print(out.shape, out.dtype.name)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert (out.stderr, out.stdout) == ("", "(32, 32, 3) uint8\n")
