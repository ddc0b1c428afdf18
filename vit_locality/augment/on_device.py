"""Crop and flip, AutoAugment (CIFAR-10 policy) and ColorJitter in JAX, for the input on the
accelerator.

The same semantics as the TensorFlow ops of `vit_locality.data.autoaugment` and `color_jitter`
(torchvision's, bit
for bit against Pillow; tests/test_device_augment.py compares every op at every magnitude bin
and sign with them): the same eight kernels with the same precomputed tables
(`autoaugment_policy`), the same float32 blends, PIL's float64 AutoContrast table. No product
is left next to the sum that follows it, where a backend could fuse the two into one FMA and
round differently from Pillow: a blend's float32 product is computed exactly in float64 and then
rounded, AutoContrast's float64 products are read from tables made in NumPy.

Per image: uint8 `[H, W, C]` (C = 1 or 3) and a PRNG key; `jax.vmap` them over a batch. Only the
random draws differ from the tf.data ops (JAX's keys against TensorFlow's stateless seeds): the
distribution of sub-policies, coins and factors is the same. No TensorFlow.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vit_locality.augment.autoaugment_policy import (
    CIFAR10_POLICY,
    IDENTITY,
    magnitude,
    op_spec,
    policy_probabilities,
    policy_specs,
)


def pad_crop_flip(key: jax.Array, image: jax.Array, padding: int, flip: bool) -> jax.Array:
    """One uint8 [H, W, C] image: zero-pad by `padding`, random crop back, mirror with p = 1/2."""
    crop_key, flip_key = jax.random.split(key)
    height, width, channels = image.shape
    if padding > 0:
        padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
        offset = jax.random.randint(crop_key, (2,), 0, 2 * padding + 1)
        image = jax.lax.dynamic_slice(padded, (offset[0], offset[1], 0), (height, width, channels))
    if flip:
        image = jnp.where(jax.random.uniform(flip_key) < 0.5, image[:, ::-1], image)
    return image


_PIL_LUMA = np.array([19595, 38470, 7471], np.int32)


def blend(degenerate: jax.Array, image: jax.Array, factor: jax.Array) -> jax.Array:
    """PIL's `Image.blend(degenerate, image, factor)` on uint8 images, in float32:
    `degenerate + factor * (image - degenerate)`, each operation rounded to float32, clipped to
    [0, 255] and truncated. The product of a float32 factor and a difference of whole numbers up
    to 255 is exact in float64, so rounding it to float32 gives PIL's product."""
    low = degenerate.astype(jnp.float32)
    with jax.enable_x64(True):
        factor64 = jnp.asarray(factor, jnp.float32).astype(jnp.float64)
        difference = image.astype(jnp.float64) - low.astype(jnp.float64)
        step = (factor64 * difference).astype(jnp.float32)
    return jnp.clip(low + step, 0.0, 255.0).astype(jnp.uint8)


def grayscale(image: jax.Array) -> jax.Array:
    """PIL's "L" conversion of uint8 RGB `[H, W, 3]` -> uint8 `[H, W, 1]`; a 1-channel image
    is its own."""
    if image.shape[-1] == 1:
        return image
    weighted = jnp.sum(image.astype(jnp.int32) * _PIL_LUMA, axis=-1, keepdims=True)
    return ((weighted + 2**15) >> 16).astype(jnp.uint8)


def adjust_brightness(image: jax.Array, factor: jax.Array) -> jax.Array:
    return blend(jnp.zeros_like(image), image, factor)


def adjust_contrast(image: jax.Array, factor: jax.Array) -> jax.Array:
    """Blend with the mean luma rounded to an integer (`ImageEnhance.Contrast`)."""
    luma = grayscale(image).astype(jnp.int32)
    mean = (2 * jnp.sum(luma) + luma.size) // (2 * luma.size)
    return blend(jnp.full(image.shape, mean, jnp.uint8), image, factor)


def adjust_saturation(image: jax.Array, factor: jax.Array) -> jax.Array:
    """Blend with the grayscale image (`ImageEnhance.Color`); the identity on 1 channel."""
    return image if image.shape[-1] == 1 else blend(grayscale(image), image, factor)


def _sharpness(image: jax.Array, factor: jax.Array) -> jax.Array:
    """`ImageEnhance.Sharpness`: blend with the SMOOTH-filtered image (border pixels kept)."""
    pixels = image.astype(jnp.float32)
    padded = jnp.pad(pixels, ((1, 1), (1, 1), (0, 0)))
    rows = padded[:-2] + padded[1:-1] + padded[2:]
    sums = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:] + 4.0 * pixels  # 13 * SMOOTH, exact
    smooth = jnp.floor((2.0 * sums + 13.0) / 26.0)
    border = np.ones(image.shape, bool)
    border[1:-1, 1:-1] = False
    return blend(jnp.where(border, pixels, smooth), image, factor)


def _per_channel_lut(image: jax.Array, lut: jax.Array) -> jax.Array:
    """int32 `[C, 256]` tables, one per channel, applied to uint8 `[H, W, C]`."""
    channels = jnp.arange(image.shape[-1])
    return lut[channels, image.astype(jnp.int32)].astype(jnp.uint8)


@functools.cache
def _stretch_products() -> np.ndarray:
    """float64 `[256, 256]`: `[d, v] = v * (255 / d)` as PIL computes it (d = hi - lo > 0)."""
    spread = np.maximum(np.arange(256, dtype=np.float64), 1.0)[:, None]
    return np.arange(256, dtype=np.float64)[None, :] * (255.0 / spread)


def _autocontrast(image: jax.Array) -> jax.Array:
    """`ImageOps.autocontrast()`: per channel, `int(v * scale - lo * scale)` clipped to
    [0, 255], `scale = 255 / (hi - lo)`, in PIL's float64 (an integer formula differs from it for
    some 12,000 (lo, hi, v) triples); the identity where `hi == lo`."""
    low = jnp.min(image, axis=(0, 1)).astype(jnp.int32)  # [C]
    high = jnp.max(image, axis=(0, 1)).astype(jnp.int32)
    with jax.enable_x64(True):
        products = jnp.asarray(_stretch_products())[high - low]  # [C, 256]: v * scale
        offsets = jnp.take_along_axis(products, low[:, None], axis=1)  # lo * scale
        values = jnp.floor(jnp.clip(products - offsets, 0.0, 255.0)).astype(jnp.int32)
    lut = jnp.where((high > low)[:, None], values, jnp.arange(256, dtype=jnp.int32))
    return _per_channel_lut(image, lut)


def _equalize(image: jax.Array) -> jax.Array:
    """`ImageOps.equalize()`: per channel, PIL's histogram equalization table."""
    height, width, channels = image.shape
    values = image.astype(jnp.int32).reshape(-1, channels)
    histogram = jax.vmap(lambda v: jnp.bincount(v, length=256), in_axes=1)(values)  # [C, 256]
    last = jnp.take_along_axis(histogram, jnp.max(values, axis=0)[:, None], axis=1)
    step = (height * width - last) // 255
    below = jnp.cumsum(histogram, axis=1) - histogram
    safe = jnp.maximum(step, 1)
    lut = jnp.minimum((safe // 2 + below) // safe, 255)
    return _per_channel_lut(image, jnp.where(step > 0, lut, jnp.arange(256)))


def _remap(image: jax.Array, source: jax.Array) -> jax.Array:
    """Output pixel `i` = input pixel `source[i]` (flat), 0 where `source[i] == H * W`."""
    height, width, channels = image.shape
    pixels = jnp.concatenate(
        [image.reshape(height * width, channels), jnp.zeros((1, channels), image.dtype)]
    )
    return pixels[source].reshape(image.shape)


def _kernels(image: jax.Array, source: jax.Array, lut: jax.Array, factor: jax.Array) -> list:
    """The eight kernels, indexed by kind, as functions of nothing (for `lax.switch`)."""
    return [
        lambda: image,
        lambda: _remap(image, source),
        lambda: lut[image.astype(jnp.int32)],
        lambda: _autocontrast(image),
        lambda: _equalize(image),
        lambda: adjust_saturation(image, factor),
        lambda: adjust_contrast(image, factor),
        lambda: _sharpness(image, factor),
    ]


def apply_op(
    image: jax.Array,
    op_name: str,
    magnitude_bin: int | None,
    num_bins: int = 10,
    negate=False,
    space: str = "autoaugment",
) -> jax.Array:
    """One AutoAugment op at a fixed magnitude bin (the JAX twin of `autoaugment.apply_op`, with
    its "Identity" and magnitude `space`s)."""
    height, width = image.shape[:2]
    signed = magnitude(op_name, magnitude_bin, num_bins, height, width, negate, space)
    spec = op_spec(op_name, signed, height, width)
    kernels = _kernels(image, jnp.asarray(spec.source), jnp.asarray(spec.lut), spec.factor)
    return kernels[spec.kind]()


def autoaugment(image: jax.Array, key: jax.Array) -> jax.Array:
    """torchvision `AutoAugment(AutoAugmentPolicy.CIFAR10)` on one uint8 `[H, W, C]` image: one
    sub-policy drawn uniformly, each of its ops run when `u <= probability`, a signed op's
    magnitude negated with probability 1/2."""
    specs = policy_specs(*image.shape[:2])
    kinds = jnp.asarray([spec.kind for spec in specs], jnp.int32)
    sources = jnp.asarray(np.stack([spec.source for spec in specs]))
    luts = jnp.asarray(np.stack([spec.lut for spec in specs]))
    factors = jnp.asarray([spec.factor for spec in specs], jnp.float32)
    uniform = jax.random.uniform(key, (5,))
    num_policies = len(CIFAR10_POLICY)
    policy = jnp.minimum((uniform[0] * num_policies).astype(jnp.int32), num_policies - 1)
    apply = uniform[1:3] <= jnp.asarray(policy_probabilities())[policy]
    negate = (uniform[3:5] < 0.5).astype(jnp.int32)
    for slot in range(2):
        index = (policy * 2 + slot) * 2 + negate[slot]
        kind = jnp.where(apply[slot], kinds[index], IDENTITY)
        image = jax.lax.switch(kind, _kernels(image, sources[index], luts[index], factors[index]))
    return image


def adjust_color(image: jax.Array, factors: jax.Array, order: jax.Array) -> jax.Array:
    """Brightness, contrast and saturation by `factors` (float32 `[3]`), `order[0]` first (a
    permutation of 0, 1, 2), deterministically."""
    adjustments = (adjust_brightness, adjust_contrast, adjust_saturation)
    for step in range(3):
        branches = [lambda f=f, k=k, x=image: f(x, factors[k]) for k, f in enumerate(adjustments)]
        image = jax.lax.switch(order[step], branches)
    return image


def color_jitter(image: jax.Array, strength: float, key: jax.Array) -> jax.Array:
    """torchvision `ColorJitter(strength, strength, strength)` on one uint8 `[H, W, C]` image:
    brightness, contrast and saturation factors uniform in `[max(0, 1 - s), 1 + s]`, applied in
    a uniformly random order."""
    uniform = jax.random.uniform(key, (6,))
    low = max(0.0, 1.0 - strength)
    factors = low + (1.0 + strength - low) * uniform[:3]
    return adjust_color(image, factors, jnp.argsort(uniform[3:]))
