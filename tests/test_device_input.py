"""The on-device train input: epochs are permutations, batches are functions of the step,
crops are windows of the zero-padded image, and the output is sharded over the mesh."""

import jax
import numpy as np

from vit_locality.augment.on_device import pad_crop_flip
from vit_locality.data.device_input import device_train_batches
from vit_locality.parallel import sharding


def crop_flip(padding: int, flip: bool):
    """The crop-and-flip component's device form as its one op (stream 0)."""
    return [(0, lambda key, image: pad_crop_flip(key, image, padding, flip))]


def _batches(images, labels, mesh, **kwargs):
    defaults = dict(
        mesh=mesh, global_batch_size=8, start_step=0, total_steps=6, seed=0, ops=crop_flip(2, True)
    )
    return [jax.device_get(b) for b in device_train_batches(images, labels, **(defaults | kwargs))]


def test_epochs_resume_and_crops():
    mesh = sharding.make_mesh(8)
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(20, 6, 6, 3), dtype=np.uint8)
    labels = np.arange(20, dtype=np.int32)
    full = _batches(images, labels, mesh)
    for epoch in range(3):  # 2 full batches per epoch, no example twice within one
        seen = np.concatenate([full[s]["label"] for s in (2 * epoch, 2 * epoch + 1)])
        assert len(set(seen.tolist())) == 16
    resumed = _batches(images, labels, mesh, start_step=3)
    for a, b in zip(full[3:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    flipped = 0
    for batch in full:
        for image, label in zip(batch["image"], batch["label"], strict=True):
            padded = np.pad(images[label], ((2, 2), (2, 2), (0, 0)))
            windows = [padded[y : y + 6, x : x + 6] for y in range(5) for x in range(5)]
            plain = any(np.array_equal(image, w) for w in windows)
            mirrored = any(np.array_equal(image[:, ::-1], w) for w in windows)
            assert plain or mirrored
            flipped += mirrored and not plain
    assert 0.25 < flipped / 48 < 0.75


def test_batches_are_sharded_over_the_mesh():
    mesh = sharding.make_mesh(8)
    images = np.zeros((16, 4, 4, 1), np.uint8)
    batch = next(
        device_train_batches(
            images,
            np.zeros(16, np.int32),
            mesh=mesh,
            global_batch_size=16,
            start_step=0,
            total_steps=1,
            seed=0,
            ops=[],
        )
    )
    assert batch["image"].sharding.spec[0] == "data"
    assert len(batch["image"].addressable_shards) == 8
