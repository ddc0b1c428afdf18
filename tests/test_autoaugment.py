"""AutoAugment (CIFAR-10 policy) against Pillow, which torchvision's AutoAugment runs on PIL images.

The references (tests/torchvision_reference.py) are written from torchvision's source and call
Pillow directly; they share no code with `vit_locality.data.autoaugment`.
"""

import math

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from vit_locality.augment import autoaugment_policy  # noqa: E402
from vit_locality.data import autoaugment as aa  # noqa: E402

from .torchvision_reference import (  # noqa: E402
    NUM_BINS,
    as_hwc,
    pillow_op,
    read_cifar,
    torchvision_magnitude,
)
from .torchvision_reference import pil_images as reference_images  # noqa: E402

# torchvision AutoAugment._get_policies(AutoAugmentPolicy.CIFAR10), the AutoAugment paper's table.
PUBLISHED_CIFAR10_POLICY = [
    [("Invert", 0.1, None), ("Contrast", 0.2, 6)],
    [("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)],
    [("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)],
    [("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)],
    [("AutoContrast", 0.5, None), ("Equalize", 0.9, None)],
    [("ShearY", 0.2, 7), ("Posterize", 0.3, 7)],
    [("Color", 0.4, 3), ("Brightness", 0.6, 7)],
    [("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)],
    [("Equalize", 0.6, None), ("Equalize", 0.5, None)],
    [("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)],
    [("Color", 0.7, 7), ("TranslateX", 0.5, 8)],
    [("Equalize", 0.3, None), ("AutoContrast", 0.4, None)],
    [("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)],
    [("Brightness", 0.9, 6), ("Color", 0.2, 8)],
    [("Solarize", 0.5, 2), ("Invert", 0.0, None)],
    [("Equalize", 0.2, None), ("AutoContrast", 0.6, None)],
    [("Equalize", 0.2, None), ("Equalize", 0.6, None)],
    [("Color", 0.9, 9), ("Equalize", 0.6, None)],
    [("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)],
    [("Brightness", 0.1, 3), ("Color", 0.7, 0)],
    [("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)],
    [("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)],
    [("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)],
    [("Equalize", 0.8, None), ("Invert", 0.1, None)],
    [("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)],
]
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
BLENDS = ("Brightness", "Color", "Contrast", "Sharpness")
LOOKUPS = ("Posterize", "Solarize", "AutoContrast", "Equalize", "Invert")
ALL_OPS = GEOMETRIC + BLENDS + LOOKUPS


@pytest.fixture
def pil_images(cifar10_dir) -> list[Image.Image]:
    """Three real RGB images and one of them in grayscale ("L")."""
    return reference_images(cifar10_dir)


def test_policy_is_the_published_cifar10_table():
    assert len(aa.CIFAR10_POLICY) == 25
    assert [[tuple(op) for op in pair] for pair in aa.CIFAR10_POLICY] == PUBLISHED_CIFAR10_POLICY
    assert set(aa.OP_NAMES) == set(ALL_OPS)
    assert set(aa.SIGNED_OPS) == set(GEOMETRIC + BLENDS)


def test_magnitude_bins_follow_the_augmentation_space():
    """The implementation's bins, against closed forms of `augmentation_space(10, (32, 32))`."""
    b = np.arange(NUM_BINS)
    closed_form = {
        "ShearX": 0.3 * b / 9,
        "TranslateY": 150 / 331 * 32 * b / 9,
        "Rotate": 30 * b / 9,
        "Sharpness": 0.9 * b / 9,
        "Posterize": np.array([8, 8, 7, 7, 6, 6, 5, 5, 4, 4]),
        "Solarize": 255 - 255 * b / 9,
    }
    for op, expected in closed_form.items():
        np.testing.assert_allclose(
            autoaugment_policy.magnitudes(op, NUM_BINS, 32, 32), expected, rtol=1e-6
        )
    # Whole-pixel translations: int() of 0, 1.61, 3.22, ..., 14.50.
    pixels = [int(m) for m in autoaugment_policy.magnitudes("TranslateX", NUM_BINS, 32, 32)]
    assert pixels == [0, 1, 3, 4, 6, 8, 9, 11, 12, 14]


@pytest.mark.parametrize("op", ALL_OPS)
def test_op_matches_pillow_for_every_bin_and_sign(op, pil_images):
    """Every bin, both signs, RGB and grayscale: geometry and lookup ops equal Pillow's output
    (up to 2% of pixels for geometry), the ImageEnhance blends are within one gray level."""
    worst_fraction, worst_diff = 0.0, 0
    for pil in pil_images:
        image = as_hwc(pil)
        for bin_ in range(NUM_BINS):
            for negate in (False, True):
                magnitude = torchvision_magnitude(op, bin_, image.shape[:2], negate)
                expected = as_hwc(pillow_op(pil, op, magnitude)).astype(np.int32)
                out = aa.apply_op(tf.constant(image), op, bin_, negate=negate)
                assert out.dtype == tf.uint8 and out.shape == image.shape
                diff = np.abs(out.numpy().astype(np.int32) - expected)
                worst_diff = max(worst_diff, int(diff.max()))
                worst_fraction = max(worst_fraction, float((diff.max(axis=-1) > 0).mean()))
    if op in GEOMETRIC:
        assert worst_fraction <= 0.02, f"{op}: {worst_fraction:.1%} of pixels differ from Pillow"
    elif op in BLENDS:
        assert worst_diff <= 1, f"{op}: off by {worst_diff} gray levels"
    else:
        assert worst_diff == 0, f"{op}: off by {worst_diff} gray levels"


def test_apply_op_rejects_bad_input():
    with pytest.raises(TypeError):
        aa.apply_op(tf.zeros([8, 8, 3], tf.float32), "Invert", None)
    with pytest.raises(ValueError):
        aa.apply_op(tf.zeros([8, 8, 3], tf.uint8), "Cutout", 3)
    with pytest.raises(ValueError):
        aa.apply_op(tf.zeros([8, 8, 3], tf.uint8), "Rotate", 10)


def test_autoaugment_is_deterministic_and_the_same_in_tf_data(cifar10_dir):
    # 16 images with 16 seeds, then one image under the same 16 seeds.
    images = read_cifar(cifar10_dir, 16)
    images = np.concatenate([images, np.repeat(images[:1], 16, axis=0)])
    seeds = np.tile(np.stack([np.arange(16), np.full(16, 3)], axis=1), (2, 1)).astype(np.int64)
    dataset = tf.data.Dataset.from_tensor_slices((images, seeds))
    dataset = dataset.map(aa.autoaugment, num_parallel_calls=tf.data.AUTOTUNE).batch(len(images))
    in_graph = next(iter(dataset)).numpy()
    for i in (0, 5, 16, 21):
        eager = aa.autoaugment(tf.constant(images[i]), tf.constant(seeds[i]))
        assert eager.dtype == tf.uint8 and eager.shape == (32, 32, 3)
        np.testing.assert_array_equal(in_graph[i], eager.numpy())
    again = aa.autoaugment(tf.constant(images[5]), tf.constant(seeds[5], tf.int32))
    np.testing.assert_array_equal(again.numpy(), in_graph[5])
    # Other seeds give other augmentations of the same image.
    assert len({out.tobytes() for out in in_graph[16:]}) >= 4


def test_autoaugment_applies_exactly_the_sampled_ops(cifar10_dir):
    """autoaugment(x, seed) == the sampled sub-policy's ops, via apply_op, in order."""
    images = read_cifar(cifar10_dir, 40)
    for i, image in enumerate(images):
        seed = tf.constant([i, 11], tf.int64)
        policy_index, apply, negate = (t.numpy() for t in aa._sample_policy_decisions(seed))
        expected = tf.constant(image)
        for slot, (op, _, bin_) in enumerate(PUBLISHED_CIFAR10_POLICY[policy_index]):
            if apply[slot]:
                expected = aa.apply_op(expected, op, bin_, negate=bool(negate[slot]))
        np.testing.assert_array_equal(
            aa.autoaugment(tf.constant(image), seed).numpy(), expected.numpy()
        )


def test_policy_choice_probabilities_and_signs_over_many_draws():
    draws = 20000
    dataset = tf.data.Dataset.range(draws).map(
        lambda i: aa._sample_policy_decisions(tf.stack([i, tf.constant(5, tf.int64)])),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    policy, apply, negate = (t.numpy() for t in next(iter(dataset.batch(draws))))
    assert policy.min() >= 0 and policy.max() <= 24
    counts = np.bincount(policy, minlength=25)
    sigma = math.sqrt(draws * (1 / 25) * (24 / 25))
    assert np.all(np.abs(counts - draws / 25) < 5 * sigma), counts
    for index, pair in enumerate(PUBLISHED_CIFAR10_POLICY):
        chosen = policy == index
        for slot, (_, probability, _) in enumerate(pair):
            rate = apply[chosen, slot].mean()
            tolerance = 5 * math.sqrt(max(probability * (1 - probability), 1e-4) / chosen.sum())
            assert abs(rate - probability) <= tolerance, (index, slot, rate, probability)
    assert np.all(np.abs(negate.mean(axis=0) - 0.5) < 5 * math.sqrt(0.25 / draws))
    assert abs(np.mean(negate[:, 0] == negate[:, 1]) - 0.5) < 5 * math.sqrt(0.25 / draws)


def test_autoaugment_on_grayscale_and_input_checks(cifar10_dir):
    gray = np.asarray(Image.fromarray(read_cifar(cifar10_dir, 1)[0]).convert("L"))[:, :, None]
    for seed in range(8):
        out = aa.autoaugment(tf.constant(gray), tf.constant([seed, 1]))
        assert out.dtype == tf.uint8 and out.shape == (32, 32, 1)
    with pytest.raises(TypeError):
        aa.autoaugment(tf.zeros([32, 32, 3], tf.float32), tf.constant([0, 0]))
    with pytest.raises(ValueError):
        aa.autoaugment(tf.zeros([32, 32, 4], tf.uint8), tf.constant([0, 0]))
