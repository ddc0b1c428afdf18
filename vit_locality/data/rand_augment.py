"""RandAugment and TrivialAugmentWide as torchvision does them, in TensorFlow core ops, per image
in tf.data maps.

The semantics, the op lists and the magnitude spaces are in `vit_locality.augment.rand_augment`
(torchvision's `RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=31)` and
`TrivialAugmentWide(num_magnitude_bins=31)`); the ops are AutoAugment's kernels
(`vit_locality.data.autoaugment`, bit for bit against Pillow) with Identity. Images are uint8
`[H, W, C]` with C = 1 or 3 and a static shape; randomness is stateless, from a `[2]` integer
seed: the same seed and image give the same output.
"""

from __future__ import annotations

import tensorflow as tf

from vit_locality.augment.rand_augment import (
    NUM_MAGNITUDE_BINS,
    OPS,
    RAND_AUGMENT_MAGNITUDE,
    RAND_AUGMENT_NUM_OPS,
    rand_augment_specs,
    trivial_augment_specs,
)
from vit_locality.data.autoaugment import _check_image, _kernels, _tables

__all__ = [
    "OPS",
    "rand_augment",
    "rand_augment_apply",
    "rand_augment_decisions",
    "trivial_augment",
    "trivial_augment_apply",
    "trivial_augment_decisions",
]


def _uniform_index(uniform: tf.Tensor, count: int) -> tf.Tensor:
    return tf.minimum(tf.cast(uniform * count, tf.int32), count - 1)


def _apply(image: tf.Tensor, tables, index: tf.Tensor) -> tf.Tensor:
    shape = image.shape
    image = tf.switch_case(tf.gather(tables.kinds, index), _kernels(image, tables, index))
    image.set_shape(shape)
    return image


def rand_augment_decisions(
    seed: tf.Tensor, num_ops: int = RAND_AUGMENT_NUM_OPS
) -> tuple[tf.Tensor, tf.Tensor]:
    """One image's RandAugment draws from a `[2]` stateless seed: int32 `[num_ops]` ops (into
    `OPS`), bool `[num_ops]` negations (used by signed ops only)."""
    uniform = tf.random.stateless_uniform([2, num_ops], seed)
    return _uniform_index(uniform[0], len(OPS)), uniform[1] < 0.5


def rand_augment_apply(
    image: tf.Tensor,
    ops: tf.Tensor,
    negate: tf.Tensor,
    magnitude_bin: int = RAND_AUGMENT_MAGNITUDE,
    num_bins: int = NUM_MAGNITUDE_BINS,
) -> tf.Tensor:
    """RandAugment's ops `ops` (int32 `[num_ops]`, static length, into `OPS`) with negations
    `negate` (bool `[num_ops]`) on one uint8 `[H, W, C]`, in order, deterministically."""
    image = _check_image(image)
    tables = _tables(rand_augment_specs(image.shape[0], image.shape[1], magnitude_bin, num_bins))
    keys = tf.cast(ops, tf.int32) * 2 + tf.cast(negate, tf.int32)
    for slot in range(keys.shape[0]):
        image = _apply(image, tables, keys[slot])
    return image


def rand_augment(
    image: tf.Tensor,
    seed: tf.Tensor,
    num_ops: int = RAND_AUGMENT_NUM_OPS,
    magnitude_bin: int = RAND_AUGMENT_MAGNITUDE,
    num_bins: int = NUM_MAGNITUDE_BINS,
) -> tf.Tensor:
    """torchvision `RandAugment(num_ops, magnitude_bin, num_bins)` on one image.

    Args:
      image: uint8 `[H, W, C]`, C = 1 or 3, static shape.
      seed: int32/int64 `[2]` stateless seed.
      num_ops, magnitude_bin, num_bins: torchvision's `num_ops`, `magnitude`,
        `num_magnitude_bins`.

    Returns:
      uint8 `[H, W, C]`.
    """
    ops, negate = rand_augment_decisions(seed, num_ops)
    return rand_augment_apply(image, ops, negate, magnitude_bin, num_bins)


def trivial_augment_decisions(
    seed: tf.Tensor, num_bins: int = NUM_MAGNITUDE_BINS
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One image's TrivialAugmentWide draws from a `[2]` stateless seed: int32 op (into `OPS`),
    int32 bin in [0, num_bins) (used by binned ops only), bool negation (signed ops only)."""
    uniform = tf.random.stateless_uniform([3], seed)
    return (
        _uniform_index(uniform[0], len(OPS)),
        _uniform_index(uniform[1], num_bins),
        uniform[2] < 0.5,
    )


def trivial_augment_apply(
    image: tf.Tensor,
    op: tf.Tensor,
    magnitude_bin: tf.Tensor,
    negate: tf.Tensor,
    num_bins: int = NUM_MAGNITUDE_BINS,
) -> tf.Tensor:
    """TrivialAugmentWide's op `op` (into `OPS`) at bin `magnitude_bin` of the wide space,
    negated when `negate`, on one uint8 `[H, W, C]`, deterministically."""
    image = _check_image(image)
    tables = _tables(trivial_augment_specs(image.shape[0], image.shape[1], num_bins))
    index = (tf.cast(op, tf.int32) * num_bins + tf.cast(magnitude_bin, tf.int32)) * 2
    return _apply(image, tables, index + tf.cast(negate, tf.int32))


def trivial_augment(
    image: tf.Tensor, seed: tf.Tensor, num_bins: int = NUM_MAGNITUDE_BINS
) -> tf.Tensor:
    """torchvision `TrivialAugmentWide(num_bins)` on one image.

    Args:
      image: uint8 `[H, W, C]`, C = 1 or 3, static shape.
      seed: int32/int64 `[2]` stateless seed.
      num_bins: torchvision's `num_magnitude_bins`.

    Returns:
      uint8 `[H, W, C]`.
    """
    op, magnitude_bin, negate = trivial_augment_decisions(seed, num_bins)
    return trivial_augment_apply(image, op, magnitude_bin, negate, num_bins)
