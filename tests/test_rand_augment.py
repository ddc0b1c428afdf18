"""RandAugment and TrivialAugmentWide (torchvision's, 31 magnitude bins) in both forms.

- tf.data form against Pillow, which torchvision runs on PIL images: every op at every relevant
  magnitude bin and sign (RandAugment: every pair of ops at bin 9; TrivialAugmentWide: every op
  at each of the 31 bins), on real CIFAR-10 images and a grayscale one, bit for bit. The
  references (`pillow_op`, `augmentation_space`) are tests/torchvision_reference.py's, written from
  torchvision's source, sharing no code with ours.
- JAX form against the tf.data form for the same op choices, exactly.
- Sampling: which ops, which bins, which signs, as torchvision draws them, from the seeds/keys.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from vit_locality.augment import autoaugment_policy
from vit_locality.augment import rand_augment as jra

from .torchvision_reference import as_hwc, augmentation_space, pillow_op, torchvision_magnitude
from .torchvision_reference import pil_images as reference_images

tf = pytest.importorskip("tensorflow")
from vit_locality.data import rand_augment as tra  # noqa: E402

# torchvision RandAugment._augmentation_space / TrivialAugmentWide._augmentation_space, in order.
TORCHVISION_OPS = [
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
]
SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"} | {
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
}
BINS = 31
RA_MAGNITUDE = 9


@pytest.fixture(scope="module")
def pil_images(cifar10_dir) -> list[Image.Image]:
    """Three real RGB images, one of them in grayscale ("L"), one cropped to 32 wide by 24 high
    (translations scale with the width or the height), and a flat one (AutoContrast and Equalize
    edge cases)."""
    *rgb, gray = reference_images(cifar10_dir)
    flat = Image.fromarray(np.full((32, 32, 3), 77, np.uint8))
    return [*rgb, gray, rgb[1].crop((0, 0, 32, 24)), flat]


@pytest.fixture(scope="module")
def arrays(pil_images) -> list[np.ndarray]:
    """The same images as uint8 [H, W, C]."""
    return [as_hwc(pil) for pil in pil_images]


def _tf_map(function, image: np.ndarray, *decisions: np.ndarray) -> np.ndarray:
    """`function(image, *decision_i)` for every row i of the decisions, in one tf.data map."""
    dataset = tf.data.Dataset.from_tensor_slices(decisions)
    dataset = dataset.map(lambda *d: function(tf.constant(image), *d)).batch(len(decisions[0]))
    return next(iter(dataset)).numpy()


def _ta_cases() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (op, bin, negate) of TrivialAugmentWide: int32 [868] x 2, bool [868]."""
    op, bin_, negate = np.meshgrid(
        np.arange(len(TORCHVISION_OPS)), np.arange(BINS), [False, True], indexing="ij"
    )
    return op.reshape(-1).astype(np.int32), bin_.reshape(-1).astype(np.int32), negate.reshape(-1)


def _ra_cases() -> tuple[np.ndarray, np.ndarray]:
    """Every pair of RandAugment ops with every pair of signs: int32 [784, 2], bool [784, 2]."""
    n = len(TORCHVISION_OPS)
    op1, op2, neg1, neg2 = np.meshgrid(
        np.arange(n), np.arange(n), [False, True], [False, True], indexing="ij"
    )
    ops = np.stack([op1.reshape(-1), op2.reshape(-1)], 1).astype(np.int32)
    return ops, np.stack([neg1.reshape(-1), neg2.reshape(-1)], 1)


def test_op_lists_and_magnitude_spaces_are_torchvisions():
    assert list(jra.OPS) == TORCHVISION_OPS == list(tra.OPS)
    assert {op for op in jra.OPS if op in autoaugment_policy.SIGNED_OPS} == SIGNED
    for space in ("autoaugment", "wide"):
        reference = augmentation_space(BINS, (32, 32), space)
        for op, (values, _) in reference.items():
            np.testing.assert_array_equal(
                autoaugment_policy.magnitudes(op, BINS, 32, 32, space), values, err_msg=op
            )
    # Closed forms: TrivialAugmentWide's Posterize keeps 8 down to 2 bits, its translations are
    # whole pixels of linspace(0, 32); RandAugment's bin 9 of 31 is AutoAugment's 0.3 * 9 / 30.
    wide = {op: autoaugment_policy.magnitudes(op, BINS, 32, 32, "wide") for op in TORCHVISION_OPS}
    assert wide["Posterize"].tolist() == [8 - round(i / 5) for i in range(BINS)]
    assert [int(m) for m in wide["TranslateX"]] == [int(32 * i / 30 + 1e-9) for i in range(BINS)]
    np.testing.assert_allclose(wide["Rotate"], 135 * np.arange(BINS) / 30, rtol=1e-6)
    ra = autoaugment_policy.magnitudes("ShearX", BINS, 32, 32)[RA_MAGNITUDE]
    assert ra == pytest.approx(0.3 * 9 / 30, rel=1e-6)
    assert autoaugment_policy.magnitudes("Posterize", BINS, 32, 32)[RA_MAGNITUDE] == 7
    with pytest.raises(ValueError):
        autoaugment_policy.magnitudes("ShearX", BINS, 32, 32, "imagenet")


def test_trivial_augment_every_op_bin_and_sign_equals_pillow(pil_images, arrays):
    op, bin_, negate = _ta_cases()
    for pil, image in zip(pil_images, arrays, strict=True):
        got = _tf_map(tra.trivial_augment_apply, image, op, bin_, negate)
        for i in range(len(op)):
            name = TORCHVISION_OPS[op[i]]
            magnitude = torchvision_magnitude(
                name, bin_[i], image.shape[:2], bool(negate[i]), BINS, "wide"
            )
            expected = as_hwc(pillow_op(pil, name, magnitude))
            np.testing.assert_array_equal(
                got[i], expected, err_msg=f"{name} bin {bin_[i]} negate {negate[i]}"
            )


def test_rand_augment_every_pair_of_ops_and_signs_equals_pillow(pil_images, arrays):
    ops, negate = _ra_cases()
    for pil, image in zip(pil_images, arrays, strict=True):
        got = _tf_map(tra.rand_augment_apply, image, ops, negate)
        for i in range(len(ops)):
            expected = pil
            for slot in range(2):
                name = TORCHVISION_OPS[ops[i, slot]]
                magnitude = torchvision_magnitude(
                    name, RA_MAGNITUDE, image.shape[:2], bool(negate[i, slot]), BINS
                )
                expected = pillow_op(expected, name, magnitude)
            np.testing.assert_array_equal(
                got[i], as_hwc(expected), err_msg=f"{ops[i]} negate {negate[i]}"
            )


def test_jax_equals_tensorflow_for_the_same_choices(arrays):
    ta_cases, ra_cases = _ta_cases(), _ra_cases()
    ta_jax = jax.jit(jax.vmap(jra.trivial_augment_apply, in_axes=(None, 0, 0, 0)))
    ra_jax = jax.jit(jax.vmap(jra.rand_augment_apply, in_axes=(None, 0, 0)))
    for image in arrays:
        np.testing.assert_array_equal(
            np.asarray(ta_jax(jnp.asarray(image), *ta_cases)),
            _tf_map(tra.trivial_augment_apply, image, *ta_cases),
        )
        np.testing.assert_array_equal(
            np.asarray(ra_jax(jnp.asarray(image), *ra_cases)),
            _tf_map(tra.rand_augment_apply, image, *ra_cases),
        )


def test_sampled_forms_apply_their_own_draws(arrays):
    """rand_augment(x, seed) == rand_augment_apply(x, *decisions(seed)), in tf.data and eagerly,
    and likewise in JAX (jitted, on a batch, one key per image); TrivialAugmentWide alike."""
    image = arrays[0]
    seeds = np.stack([np.arange(24), np.full(24, 7)], 1).astype(np.int64)
    for sample, apply, decide in (
        (tra.rand_augment, tra.rand_augment_apply, tra.rand_augment_decisions),
        (tra.trivial_augment, tra.trivial_augment_apply, tra.trivial_augment_decisions),
    ):
        in_graph = _tf_map(sample, image, seeds)
        assert len({out.tobytes() for out in in_graph}) >= 8  # other seeds, other outputs
        for i in (0, 5, 17):
            decisions = decide(tf.constant(seeds[i]))
            expected = apply(tf.constant(image), *decisions).numpy()
            np.testing.assert_array_equal(in_graph[i], expected)
            np.testing.assert_array_equal(sample(tf.constant(image), seeds[i]).numpy(), expected)
    keys = jax.random.split(jax.random.key(3), 24)
    batch = jnp.asarray(np.repeat(image[None], 24, axis=0))
    for sample, apply, decide in (
        (jra.rand_augment_batch, jra.rand_augment_apply, jra.rand_augment_decisions),
        (jra.trivial_augment_batch, jra.trivial_augment_apply, jra.trivial_augment_decisions),
    ):
        out = np.asarray(jax.jit(sample)(batch, keys))
        assert out.dtype == np.uint8 and out.shape == batch.shape
        assert len({o.tobytes() for o in out}) >= 8
        for i in (0, 5, 17):
            expected = jax.jit(apply)(batch[i], *decide(keys[i]))
            np.testing.assert_array_equal(out[i], np.asarray(expected))


def _assert_uniform(values: np.ndarray, count: int) -> None:
    """Each of `count` values as often as 1/count says, within 5 binomial sigmas."""
    draws = values.size
    assert values.min() >= 0 and values.max() < count
    sigma = math.sqrt(draws * (1 / count) * (1 - 1 / count))
    counts = np.bincount(values.reshape(-1), minlength=count)
    assert np.all(np.abs(counts - draws / count) < 5 * sigma), counts


def _assert_fair(coins: np.ndarray) -> None:
    assert abs(coins.mean() - 0.5) < 5 * math.sqrt(0.25 / coins.size)


def _tf_decisions(decide, draws: int):
    dataset = tf.data.Dataset.range(draws).map(
        lambda i: decide(tf.stack([i, tf.constant(5, tf.int64)]))
    )
    return [t.numpy() for t in next(iter(dataset.batch(draws)))]


def _jax_decisions(decide, draws: int):
    keys = jax.random.split(jax.random.key(11), draws)
    return [np.asarray(t) for t in jax.jit(jax.vmap(decide))(keys)]


@pytest.mark.parametrize("form", ["tf", "jax"])
def test_draws_follow_torchvisions_distributions(form):
    """RandAugment: each of its 2 ops uniform over the 14, independently, each sign a fair
    coin. TrivialAugmentWide: one op uniform over the 14, one bin uniform over the 31, a fair
    sign, independently. 20,000 draws, 5 sigmas."""
    draws = 20000
    draw, module = (_tf_decisions, tra) if form == "tf" else (_jax_decisions, jra)
    ops, negate = draw(module.rand_augment_decisions, draws)
    assert ops.shape == negate.shape == (draws, 2)
    _assert_uniform(ops, 14)
    _assert_uniform(ops[:, 0] * 14 + ops[:, 1], 14 * 14)  # the two ops independent
    _assert_fair(negate)
    _assert_fair(negate[:, 0] == negate[:, 1])
    op, bin_, negate = draw(module.trivial_augment_decisions, draws)
    _assert_uniform(op, 14)
    _assert_uniform(bin_, BINS)
    _assert_fair(negate)
    _assert_uniform((op % 2) * BINS + bin_, 2 * BINS)  # op and bin independent
    _assert_fair(negate == (bin_ % 2 == 1))


def test_input_checks():
    with pytest.raises(TypeError):
        tra.trivial_augment(tf.zeros([32, 32, 3], tf.float32), tf.constant([0, 0]))
    with pytest.raises(ValueError):
        tra.rand_augment(tf.zeros([32, 32, 4], tf.uint8), tf.constant([0, 0]))
    with pytest.raises(ValueError):
        jra.rand_augment_specs(32, 32, magnitude_bin=31)
    with pytest.raises(ValueError):
        jra.trivial_augment_specs(32, 32, num_bins=1)
