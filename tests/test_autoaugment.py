"""AutoAugment (CIFAR-10 policy) against Pillow, which torchvision's AutoAugment runs on PIL images.

The references below are written from torchvision's source (autoaugment.py `_apply_op`,
`_augmentation_space`; functional.py `affine`, `_get_inverse_affine_matrix`; _functional_pil.py)
and call Pillow directly; they share no code with `vit_locality.data.autoaugment`.
"""

import math

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

tf = pytest.importorskip("tensorflow")

from vit_locality.augment import autoaugment_policy  # noqa: E402
from vit_locality.data import autoaugment as aa  # noqa: E402

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
NUM_BINS = 10


def _read_cifar(directory, count: int) -> np.ndarray:
    """The first `count` test images, uint8 [N, 32, 32, 3] (records: label byte, R, G, B planes)."""
    raw = np.fromfile(directory / "test_batch.bin", np.uint8, count=count * 3073)
    return raw.reshape(count, 3073)[:, 1:].reshape(count, 3, 32, 32).transpose(0, 2, 3, 1).copy()


@pytest.fixture
def pil_images(cifar10_dir) -> list[Image.Image]:
    """Three real RGB images and one of them in grayscale ("L")."""
    rgb = [Image.fromarray(image) for image in _read_cifar(cifar10_dir, 3)]
    return rgb + [rgb[0].convert("L")]


def _as_hwc(pil: Image.Image) -> np.ndarray:
    array = np.asarray(pil)
    return array[:, :, None] if array.ndim == 2 else array


def _linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace in float32 (ATen's CPU kernel: from `start` for the first half, from `end`
    for the second half)."""
    start, end = np.float32(start), np.float32(end)
    step = np.float32((end - start) / np.float32(steps - 1))
    return np.array(
        [
            start + step * np.float32(i)
            if i < steps // 2
            else end - step * np.float32(steps - 1 - i)
            for i in range(steps)
        ],
        np.float32,
    )


def _augmentation_space(num_bins: int, size: tuple[int, int], space: str) -> dict:
    """`{op: (magnitudes, signed)}` of torchvision's `_augmentation_space(num_bins, ...)`:
    AutoAugment's and RandAugment's ("autoaugment"; RandAugment adds Identity and drops Invert,
    which take no magnitude) or TrivialAugmentWide's ("wide")."""
    height, width = size
    if space == "wide":
        shear, translate_x, translate_y, rotate, enhance, posterize = (
            0.99,
            32.0,
            32.0,
            135.0,
            0.99,
            6,
        )
    else:
        shear, rotate, enhance, posterize = 0.3, 30.0, 0.9, 4
        translate_x, translate_y = 150.0 / 331.0 * width, 150.0 / 331.0 * height
    posterize_bits = 8 - np.round(
        np.arange(num_bins).astype(np.float32) / np.float32((num_bins - 1) / posterize)
    )
    return {
        "ShearX": (_linspace_f32(0.0, shear, num_bins), True),
        "ShearY": (_linspace_f32(0.0, shear, num_bins), True),
        "TranslateX": (_linspace_f32(0.0, translate_x, num_bins), True),
        "TranslateY": (_linspace_f32(0.0, translate_y, num_bins), True),
        "Rotate": (_linspace_f32(0.0, rotate, num_bins), True),
        "Brightness": (_linspace_f32(0.0, enhance, num_bins), True),
        "Color": (_linspace_f32(0.0, enhance, num_bins), True),
        "Contrast": (_linspace_f32(0.0, enhance, num_bins), True),
        "Sharpness": (_linspace_f32(0.0, enhance, num_bins), True),
        "Posterize": (posterize_bits.astype(np.float32), False),
        "Solarize": (_linspace_f32(255.0, 0.0, num_bins), False),
    }


def _torchvision_magnitude(
    op: str,
    bin_: int,
    size: tuple[int, int],
    negate: bool,
    num_bins: int = NUM_BINS,
    space: str = "autoaugment",
) -> float:
    """`float(magnitudes[bin])` of `_augmentation_space(num_bins, (height, width))` (AutoAugment's
    by default), negated for signed ops when asked; 0 for ops without a magnitude."""
    table = _augmentation_space(num_bins, size, space)
    if op not in table:
        return 0.0
    values, signed = table[op]
    magnitude = float(values[bin_])
    return -magnitude if signed and negate else magnitude


def _inverse_affine(center, angle, translate, shear) -> list[float]:
    """torchvision.transforms.functional._get_inverse_affine_matrix with scale 1."""
    rot = math.radians(angle)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    matrix = [d, -b, 0.0, -c, a, 0.0]
    matrix[2] += matrix[0] * (-cx - tx) + matrix[1] * (-cy - ty)
    matrix[5] += matrix[3] * (-cx - tx) + matrix[4] * (-cy - ty)
    matrix[2] += cx
    matrix[5] += cy
    return matrix


def _pillow_op(pil: Image.Image, op: str, magnitude: float) -> Image.Image:
    """torchvision `_apply_op(img, op, magnitude, NEAREST, fill=None)` on a PIL image."""
    width, height = pil.size

    def affine(center, translate, shear):
        matrix = _inverse_affine(center, 0.0, translate, shear)
        return pil.transform(
            pil.size, Image.Transform.AFFINE, matrix, Image.Resampling.NEAREST, fillcolor=0
        )

    if op == "ShearX":
        return affine([0, 0], [0, 0], [math.degrees(math.atan(magnitude)), 0.0])
    if op == "ShearY":
        return affine([0, 0], [0, 0], [0.0, math.degrees(math.atan(magnitude))])
    if op == "TranslateX":
        return affine([width * 0.5, height * 0.5], [int(magnitude), 0], [0.0, 0.0])
    if op == "TranslateY":
        return affine([width * 0.5, height * 0.5], [0, int(magnitude)], [0.0, 0.0])
    if op == "Rotate":
        return pil.rotate(magnitude, Image.Resampling.NEAREST, expand=False, fillcolor=0)
    if op == "Identity":
        return pil.copy()
    enhancers = {
        "Brightness": ImageEnhance.Brightness,
        "Color": ImageEnhance.Color,
        "Contrast": ImageEnhance.Contrast,
        "Sharpness": ImageEnhance.Sharpness,
    }
    if op in enhancers:
        return enhancers[op](pil).enhance(1.0 + magnitude)
    if op == "Posterize":
        return ImageOps.posterize(pil, int(magnitude))
    if op == "Solarize":
        return ImageOps.solarize(pil, magnitude)
    return {"AutoContrast": ImageOps.autocontrast, "Equalize": ImageOps.equalize}.get(
        op, ImageOps.invert
    )(pil)


def test_policy_is_the_published_cifar10_table():
    assert len(aa.CIFAR10_POLICY) == 25
    assert [[tuple(op) for op in pair] for pair in aa.CIFAR10_POLICY] == PUBLISHED_CIFAR10_POLICY
    assert set(aa.OP_NAMES) == set(ALL_OPS)
    assert set(aa.SIGNED_OPS) == set(GEOMETRIC + BLENDS)


def test_magnitude_bins_follow_the_augmentation_space():
    """The implementation's bins, against closed forms of `_augmentation_space(10, (32, 32))`."""
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
        image = _as_hwc(pil)
        for bin_ in range(NUM_BINS):
            for negate in (False, True):
                magnitude = _torchvision_magnitude(op, bin_, image.shape[:2], negate)
                expected = _as_hwc(_pillow_op(pil, op, magnitude)).astype(np.int32)
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
    images = _read_cifar(cifar10_dir, 16)
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
    images = _read_cifar(cifar10_dir, 40)
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
    gray = np.asarray(Image.fromarray(_read_cifar(cifar10_dir, 1)[0]).convert("L"))[:, :, None]
    for seed in range(8):
        out = aa.autoaugment(tf.constant(gray), tf.constant([seed, 1]))
        assert out.dtype == tf.uint8 and out.shape == (32, 32, 1)
    with pytest.raises(TypeError):
        aa.autoaugment(tf.zeros([32, 32, 3], tf.float32), tf.constant([0, 0]))
    with pytest.raises(ValueError):
        aa.autoaugment(tf.zeros([32, 32, 4], tf.uint8), tf.constant([0, 0]))
