"""Random erasing on the device against timm's `RandomErasing` semantics (count 1)."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from configs import common
from vit_locality import step, train_state
from vit_locality.augment import registry
from vit_locality.augment.erasing import ErasingSpec, random_erasing
from vit_locality.predict import Predictor

SIZE = 32
FILL = 5.0  # the value of every input pixel: a pixel that is not FILL was erased


@partial(jax.jit, static_argnames=("spec",))
def erase(rng, images, spec):
    return random_erasing(rng, images, spec)


def flat_images(batch, size=SIZE, channels=3):
    return jnp.full((batch, size, size, channels), FILL, jnp.float32)


def erased_masks(out):
    """bool [B, H, W]: pixels where any channel changed."""
    return np.any(np.asarray(out) != FILL, axis=-1)


def boxes(masks):
    """(top, left, h, w) float arrays of the bounding boxes of non-empty masks [B, H, W]."""
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    top, left = rows.argmax(axis=1), cols.argmax(axis=1)
    return tuple(x.astype(np.float64) for x in (top, left, rows.sum(1), cols.sum(1)))


def test_const_mode_erases_one_box_of_zeros_per_chosen_image_by_timms_law():
    n, prob = 4000, 0.5
    out = np.asarray(erase(jax.random.key(1), flat_images(n), ErasingSpec(prob, "const")))
    masks = erased_masks(out)
    erased = masks.any(axis=(1, 2))
    assert abs(erased.mean() - prob) < 4 * np.sqrt(prob * (1 - prob) / n)  # prob per image
    np.testing.assert_array_equal(out[masks], 0.0)  # every channel of an erased pixel is 0
    np.testing.assert_array_equal(out[~masks], FILL)  # the rest is untouched
    masks = masks[erased]
    top, left, h, w = boxes(masks)
    assert (masks.sum(axis=(1, 2)) == h * w).all()  # each erased region is one full rectangle
    assert len({m.tobytes() for m in masks}) > 0.9 * len(masks)  # drawn independently
    # h and w are rounded from reals whose product and ratio lie inside timm's bounds, ...
    area = SIZE * SIZE
    assert ((h + 0.5) * (w + 0.5) >= 0.02 * area).all()
    assert ((h - 0.5) * (w - 0.5) <= area / 3).all()
    assert ((h + 0.5) / (w - 0.5) >= 0.3).all() and ((h - 0.5) / (w + 0.5) <= 1 / 0.3).all()
    assert (h < SIZE).all() and (w < SIZE).all()
    # ... and cover the range: small and large, tall and wide (log-uniform: as many of each).
    fraction = h * w / area
    assert fraction.min() < 0.03 and fraction.max() > 0.3
    assert (h / w).min() < 0.4 and (h / w).max() > 2.5
    assert abs(np.mean(h > w) - np.mean(w > h)) < 0.06
    # corners: uniform over the positions where the box fits, both ends reached.
    assert (top == 0).any() and (top + h == SIZE).any()
    assert (left == 0).any() and (left + w == SIZE).any()


def test_pixel_mode_fills_with_standard_normal_noise_per_pixel_and_channel():
    out = np.asarray(erase(jax.random.key(2), flat_images(256), ErasingSpec(1.0, "pixel")))
    masks = erased_masks(out)
    assert masks.any(axis=(1, 2)).all()  # prob 1: every image got a box
    noise = out[masks]  # [pixels, C]
    assert noise.size > 50_000
    assert abs(noise.mean()) < 0.02 and abs(noise.std() - 1.0) < 0.02
    assert np.mean(np.abs(noise) > 1.96) == pytest.approx(0.05, abs=0.01)
    assert np.corrcoef(noise[:, 0], noise[:, 1])[0, 1] == pytest.approx(0.0, abs=0.02)
    np.testing.assert_array_equal(out[~masks], FILL)


def test_prob_zero_is_the_identity():
    images = jax.random.normal(jax.random.key(5), (8, SIZE, SIZE, 3))
    np.testing.assert_array_equal(random_erasing(jax.random.key(6), images, ErasingSpec()), images)


def test_jit_equals_eager_and_the_key_decides():
    images = jax.random.normal(jax.random.key(7), (256, SIZE, SIZE, 3))  # shapes and spec of
    spec = ErasingSpec(1.0, "pixel")  # the pixel-mode test: the jitted function is compiled once
    eager = random_erasing(jax.random.key(8), images, spec)
    np.testing.assert_array_equal(erase(jax.random.key(8), images, spec), eager)
    assert not np.array_equal(erase(jax.random.key(9), images, spec), eager)


def test_train_step_erases_with_its_own_key_leaving_mixing_draws_alone():
    class Linear(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(10)(x.reshape(x.shape[0], -1)), {}

    model, schedule = Linear(), optax.constant_schedule(0.1)
    state = train_state.create_train_state(model, optax.sgd(schedule), 0, (8, 8, 3))
    images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
    batch = {"image": jnp.asarray(images), "label": jnp.arange(8)}

    def metrics(erasing: float):
        config = common.get_config("cifar10")
        config.mix.cutmix_alpha, config.mix.prob = 1.0, 1.0
        config.aug.random_erasing, config.aug.random_erasing_mode = erasing, "const"
        train_step = step.make_train_step(
            Predictor(model, (0.5,) * 3, (0.25,) * 3),
            num_classes=10,
            protocol_ops=registry.step_ops(config, num_shards=1),
            seed=0,
            schedule=schedule,
        )
        return jax.jit(train_step)(state, batch)[1]

    off, on = metrics(0.0), metrics(1.0)
    assert on["lam"] == off["lam"]  # CutMix drew the same box
    assert on["loss"] != off["loss"]  # but the images were erased
