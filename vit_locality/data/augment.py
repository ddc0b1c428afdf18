"""Per-example train augmentation in TensorFlow, on uint8 [H, W, C] images with stateless seeds.

Order (docs/augmentation.md): zero-pad by `crop_padding` and random-crop back, random horizontal
flip, then AutoAugment (CIFAR-10 policy) and/or ColorJitter when enabled. Normalization happens
on the device, in the train step. Every random choice is drawn from the example's `seed` ([2]
int64), so an example at a given position of the stream always gets the same augmentation.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections
import tensorflow as tf

Augment = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def pad_crop_flip(image: tf.Tensor, seed: tf.Tensor, padding: int, flip: bool) -> tf.Tensor:
    """Zero-pads by `padding` pixels per side, crops a random window of the original size, and
    mirrors it left-right with probability 1/2. uint8 [H, W, C] -> uint8 [H, W, C]."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if padding > 0:
        height, width, channels = image.shape
        padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
        offset = tf.random.stateless_uniform(
            [2], crop_seed, minval=0, maxval=2 * padding + 1, dtype=tf.int32
        )
        image = tf.slice(padded, [offset[0], offset[1], 0], [height, width, channels])
    if flip:
        mirror = tf.random.stateless_uniform([], flip_seed) < 0.5
        image = tf.where(mirror, tf.reverse(image, axis=[1]), image)
    return image


def make_train_augment(aug: ml_collections.ConfigDict) -> Augment:
    """The `config.aug` protocol as one function `(uint8 image [H, W, C], seed [2]) -> uint8`."""
    autoaugment = color_jitter = None
    if aug.autoaugment:
        from vit_locality.data.autoaugment import autoaugment
    if aug.color_jitter > 0:
        from vit_locality.data.color_jitter import color_jitter

    def augment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        crop_seed, aa_seed, cj_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
        image = pad_crop_flip(image, crop_seed, aug.crop_padding, aug.flip)
        if autoaugment is not None:
            image = autoaugment(image, aa_seed)
        if color_jitter is not None:
            image = color_jitter(image, aug.color_jitter, cj_seed)
        return image

    return augment
