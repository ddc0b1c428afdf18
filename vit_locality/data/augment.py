"""Per-example train augmentation in TensorFlow, on uint8 [H, W, C] images with stateless seeds.

The protocol's "image" components in their order (`vit_locality.augment.registry`; today
zero-pad by `crop_padding` and random-crop back, random horizontal flip, then AutoAugment and/or
ColorJitter when enabled; docs/augmentation.md). Normalization happens on the device, in the
train step. Every random choice is drawn from the example's `seed` ([2] int64): component `i`
draws from `stateless_split(seed, n)[stream_i]`, so an example at a given position of the stream
always gets the same augmentation, and adding a component changes no other's draws.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections
import tensorflow as tf

from vit_locality.augment import registry

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


def make_train_augment(config: ml_collections.ConfigDict) -> Augment:
    """The protocol's "image" components that `config` has on, as one function `(uint8 image
    [H, W, C], seed [2]) -> uint8`, in their order (`vit_locality.augment.registry`); each
    draws from its stream of the example's seed."""
    ops = registry.tf_image_ops(config)
    streams = registry.image_streams()

    def augment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        seeds = tf.unstack(tf.random.experimental.stateless_split(seed, streams))
        for stream, op in ops:
            image = op(image, seeds[stream])
        return image

    return augment
