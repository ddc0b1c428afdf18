"""AutoAugment and ColorJitter in JAX against the TensorFlow ops (which equal Pillow bit for bit,
tests/test_autoaugment.py): every op at every magnitude bin and sign, and ColorJitter at fixed
factors and orders, on real CIFAR-10 images and a grayscale one, exactly."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vit_locality.augment import on_device as dev
from vit_locality.augment.autoaugment_policy import CIFAR10_POLICY, OP_NAMES, SIGNED_OPS
from vit_locality.data import files

from .conftest import CIFAR10_SAMPLE

tf = pytest.importorskip("tensorflow")
from vit_locality.data import autoaugment as tf_aa  # noqa: E402
from vit_locality.data import color_jitter as tf_cj  # noqa: E402


@pytest.fixture(scope="module")
def images():
    if not (CIFAR10_SAMPLE / "test_batch.bin").exists():
        pytest.skip("real CIFAR-10 sample absent")
    rgb = files.read_cifar10(CIFAR10_SAMPLE, "test")[0][:6]
    flat = np.full((32, 32, 3), 77, np.uint8)  # a flat image: AutoContrast/Equalize edge cases
    gray = rgb[0, ..., :1]  # one channel, as Fashion-MNIST
    return [*rgb, flat, gray]


CASES = [
    (op, magnitude_bin, negate)
    for op in OP_NAMES
    for magnitude_bin in (range(10) if op not in ("AutoContrast", "Equalize", "Invert") else [None])
    for negate in ((False, True) if op in SIGNED_OPS else (False,))
]


@pytest.mark.parametrize("op", OP_NAMES)
def test_every_op_at_every_bin_and_sign_equals_the_tensorflow_op(images, op):
    cases = [c for c in CASES if c[0] == op]
    for image in images:
        jit_image = jnp.asarray(image)
        for _, magnitude_bin, negate in cases:
            expected = tf_aa.apply_op(tf.constant(image), op, magnitude_bin, negate=negate).numpy()
            got = jax.jit(dev.apply_op, static_argnums=(1, 2, 3, 4))(
                jit_image, op, magnitude_bin, 10, negate
            )
            np.testing.assert_array_equal(
                np.asarray(got), expected, err_msg=f"{op} {magnitude_bin} {negate}"
            )


def test_color_adjustments_equal_the_tensorflow_ones(images):
    rng = np.random.default_rng(0)
    adjust = jax.jit(dev.adjust_color)
    for image in images:
        for _ in range(6):
            factors = rng.uniform(0.6, 1.4, 3).astype(np.float32)
            order = rng.permutation(3).astype(np.int32)
            expected = tf_cj.adjust_color(
                tf.constant(image), tf.constant(factors), tf.constant(order)
            ).numpy()
            np.testing.assert_array_equal(np.asarray(adjust(image, factors, order)), expected)


def test_the_policy_draws_sub_policies_ops_and_signs_with_their_probabilities():
    """Every output is one of the policy's deterministic outcomes (sub-policy, which ops run,
    which signs), each as often as its probability says: total variation under 0.06 over 4,000
    draws (about 2.5 times its sampling noise here)."""
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), np.uint8)
    apply = jax.jit(dev.apply_op, static_argnums=(1, 2, 3, 4))
    outcomes: dict[bytes, float] = {}
    for (op1, p1, bin1), (op2, p2, bin2) in CIFAR10_POLICY:
        for run1, run2 in itertools.product((False, True), repeat=2):
            for neg1, neg2 in itertools.product((False, True), repeat=2):
                out = jnp.asarray(image)
                if run1:
                    out = apply(out, op1, bin1, 10, neg1)
                if run2:
                    out = apply(out, op2, bin2, 10, neg2)
                chance = (p1 if run1 else 1 - p1) * (p2 if run2 else 1 - p2) / 25 / 4
                key = np.asarray(out).tobytes()
                outcomes[key] = outcomes.get(key, 0.0) + chance
    keys = jax.random.split(jax.random.key(0), 4000)
    drawn = np.asarray(jax.jit(jax.vmap(dev.autoaugment, in_axes=(None, 0)))(image, keys))
    counts: dict[bytes, int] = {}
    for out in drawn:
        counts[out.tobytes()] = counts.get(out.tobytes(), 0) + 1
    assert set(counts) <= set(outcomes)
    distance = 0.5 * sum(abs(counts.get(k, 0) / len(drawn) - p) for k, p in outcomes.items())
    assert distance < 0.06, distance
