"""ColorJitter against Pillow (uint8, torchvision's PIL backend) and NumPy (float, torchvision's
tensor backend); the references share no code with `vit_locality.data.color_jitter`."""

import itertools
import math

import numpy as np
import pytest
from PIL import Image, ImageEnhance

tf = pytest.importorskip("tensorflow")

from vit_locality.data import color_jitter as cj  # noqa: E402

ORDERS = list(itertools.permutations(range(3)))  # 0 brightness, 1 contrast, 2 saturation
ENHANCERS = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
FACTORS = [(0.6, 1.4, 0.75), (1.37, 0.62, 1.21), (0.0, 1.9, 0.0), (1.0, 1.0, 1.0), (2.5, 0.3, 1.6)]


def _read_cifar(directory, count: int) -> np.ndarray:
    """The first `count` test images, uint8 [N, 32, 32, 3] (records: label byte, R, G, B planes)."""
    raw = np.fromfile(directory / "test_batch.bin", np.uint8, count=count * 3073)
    return raw.reshape(count, 3073)[:, 1:].reshape(count, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def _pillow_jitter(pil: Image.Image, factors, order) -> np.ndarray:
    """torchvision ColorJitter.forward on a PIL image with fixed factors and order."""
    for index in order:
        pil = ENHANCERS[index](pil).enhance(float(np.float32(factors[index])))
    array = np.asarray(pil)
    return array[:, :, None] if array.ndim == 2 else array


def _numpy_jitter(image: np.ndarray, factors, order) -> np.ndarray:
    """torchvision's tensor ColorJitter on a float image in [0, 1] ([H, W, C])."""
    image = image.astype(np.float64)
    for index in order:
        factor = float(np.float32(factors[index]))
        if image.shape[-1] == 3:
            gray = image @ np.array([0.2989, 0.587, 0.114])[:, None]
        else:
            gray = image
        if index == 0:
            other = np.zeros_like(image)
        elif index == 1:
            other = np.full_like(image, gray.mean())
        elif image.shape[-1] == 3:
            other = np.broadcast_to(gray, image.shape)
        else:
            continue  # saturation of a grayscale image: a no-op
        image = np.clip(factor * image + (1.0 - factor) * other, 0.0, 1.0)
    return image


def _adjust(image: np.ndarray, factors, order) -> np.ndarray:
    out = cj.adjust_color(
        tf.constant(image), tf.constant(factors, tf.float32), tf.constant(order, tf.int32)
    )
    assert out.dtype == tf.as_dtype(image.dtype) and out.shape == image.shape
    return out.numpy()


def test_adjust_color_matches_pillow_on_uint8(cifar10_dir):
    rgb = _read_cifar(cifar10_dir, 3)
    gray = np.asarray(Image.fromarray(rgb[0]).convert("L"))[:, :, None]
    worst, off = 0, 0.0
    for image in [*rgb, gray]:
        pil = Image.fromarray(image if image.shape[-1] == 3 else image[:, :, 0])
        for factors, order in itertools.product(FACTORS, ORDERS):
            diff = np.abs(
                _adjust(image, factors, order).astype(int) - _pillow_jitter(pil, factors, order)
            )
            worst, off = max(worst, int(diff.max())), max(off, float((diff > 0).mean()))
    assert worst <= 1, f"off by {worst} gray levels"
    assert off <= 0.01, f"{off:.1%} of values differ from Pillow"


def test_adjust_color_matches_torchvision_tensor_semantics_on_float(cifar10_dir):
    rgb = _read_cifar(cifar10_dir, 2).astype(np.float32) / 255.0
    gray = rgb[:1] @ np.array([0.2989, 0.587, 0.114], np.float32)[:, None]
    for image in [*rgb, gray[0]]:
        for factors, order in itertools.product(FACTORS, ORDERS):
            out = _adjust(image, factors, order)
            np.testing.assert_allclose(out, _numpy_jitter(image, factors, order), atol=2e-6)


def test_uint8_clips_instead_of_wrapping_around(cifar10_dir):
    image = _read_cifar(cifar10_dir, 1)[0]
    bright = cj.adjust_brightness(tf.constant(image), 1.9).numpy().astype(int)
    np.testing.assert_array_equal(bright, np.minimum(np.floor(image * np.float32(1.9)), 255))
    assert bright.max() == 255 and np.all(bright >= image)
    contrast = cj.adjust_contrast(tf.constant(image), 3.0).numpy()
    assert contrast.min() == 0 and contrast.max() == 255
    black = cj.adjust_brightness(tf.constant(image), 0.0).numpy()
    assert not black.any()
    white = np.full([4, 4, 3], 250, np.uint8)
    for order in ORDERS:
        assert np.all(_adjust(white, (1.4, 1.4, 1.4), order) == 255)


def test_grayscale_saturation_is_a_no_op(cifar10_dir):
    gray = np.asarray(Image.fromarray(_read_cifar(cifar10_dir, 1)[0]).convert("L"))[:, :, None]
    for image in (gray, gray.astype(np.float32) / 255.0):
        np.testing.assert_array_equal(cj.adjust_saturation(tf.constant(image), 0.2).numpy(), image)
        out = cj.color_jitter(tf.constant(image), 0.4, tf.constant([1, 2]))
        assert out.shape == image.shape and out.dtype == tf.as_dtype(image.dtype)


def _sample_params(strength: float, draws: int) -> tuple[np.ndarray, np.ndarray]:
    dataset = tf.data.Dataset.range(draws).map(
        lambda i: cj._sample_jitter_params(strength, tf.stack([i, tf.constant(9, tf.int64)]))
    )
    factors, orders = next(iter(dataset.batch(draws)))
    return factors.numpy(), orders.numpy()


@pytest.mark.parametrize("strength", [0.4, 1.5])
def test_factor_ranges_and_random_order(strength):
    draws = 6000
    factors, orders = _sample_params(strength, draws)
    low, high = max(0.0, 1.0 - strength), 1.0 + strength
    assert factors.min() >= low and factors.max() <= high
    width = high - low
    np.testing.assert_allclose(factors.min(axis=0), low, atol=0.01 * width)
    np.testing.assert_allclose(factors.max(axis=0), high, atol=0.01 * width)
    np.testing.assert_allclose(
        factors.mean(axis=0), (low + high) / 2, atol=5 * width / math.sqrt(12 * draws)
    )
    assert np.all(np.sort(orders, axis=1) == [0, 1, 2])
    counts = np.array([np.all(orders == order, axis=1).sum() for order in ORDERS])
    assert np.all(np.abs(counts - draws / 6) < 5 * math.sqrt(draws * (1 / 6) * (5 / 6))), counts


def test_color_jitter_applies_the_sampled_factors_in_the_sampled_order(cifar10_dir):
    images = _read_cifar(cifar10_dir, 8)
    for i, image in enumerate(images):
        seed = tf.constant([i, 4], tf.int64)
        factors, order = cj._sample_jitter_params(0.4, seed)
        expected = _adjust(image, factors.numpy(), order.numpy())
        np.testing.assert_array_equal(
            cj.color_jitter(tf.constant(image), 0.4, seed).numpy(), expected
        )


def test_color_jitter_deterministic_in_tf_data_and_identity_at_zero(cifar10_dir):
    images = _read_cifar(cifar10_dir, 8)
    seeds = np.stack([np.arange(8), np.full(8, 2)], axis=1).astype(np.int64)
    dataset = tf.data.Dataset.from_tensor_slices((images, seeds))
    dataset = dataset.map(lambda x, s: cj.color_jitter(x, 0.4, s), num_parallel_calls=4).batch(8)
    in_graph = next(iter(dataset)).numpy()
    for i in (0, 7):
        eager = cj.color_jitter(tf.constant(images[i]), 0.4, tf.constant(seeds[i]))
        np.testing.assert_array_equal(in_graph[i], eager.numpy())
    assert not np.array_equal(in_graph, images)
    for image in (images[0], images[0].astype(np.float32) / 255.0):
        out = cj.color_jitter(tf.constant(image), 0.0, tf.constant([3, 3]))
        np.testing.assert_array_equal(out.numpy(), image)
