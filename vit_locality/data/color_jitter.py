"""ColorJitter (brightness, contrast, saturation) as torchvision does it, in TensorFlow core ops.

`color_jitter(image, s, seed)` is torchvision's `ColorJitter(brightness=s, contrast=s,
saturation=s)` (torchvision/transforms/transforms.py): three factors drawn uniformly from
`[max(0, 1 - s), 1 + s]`, applied in a random order (a uniform permutation; torchvision permutes
four ops, the hue slot being a no-op here). Each adjustment blends the image with a degenerate
image, `degenerate + factor * (image - degenerate)`:

- brightness: degenerate = black, i.e. the image is multiplied by the factor (unlike
  `tf.image.adjust_brightness`, which adds an offset);
- contrast: degenerate = the mean of the grayscale image, one value for all channels;
- saturation: degenerate = the grayscale image; a no-op on 1-channel images.

uint8 images follow torchvision's PIL backend exactly (`PIL.ImageEnhance`): grayscale is PIL's "L"
conversion `(19595 R + 38470 G + 7471 B + 2**15) >> 16`, the contrast mean is that image's mean
rounded to an integer, and the blend is clipped to [0, 255] and truncated (`Image.blend`), so
values never wrap around. Float images in [0, 1] follow torchvision's tensor backend: grayscale
`0.2989 R + 0.587 G + 0.114 B`, a float mean, the blend clamped to [0, 1].

`blend`, `adjust_contrast` and `adjust_saturation` are shared with `vit_locality.data.autoaugment`
(AutoAugment's Color, Contrast and Sharpness are the same PIL enhancers).
All randomness is stateless, drawn from a `[2]` integer seed, so it runs inside `tf.data` maps.
"""

from __future__ import annotations

import tensorflow as tf

# PIL's ITU-R 601-2 luma in 16-bit fixed point (libImaging/Convert.c, L24) and torchvision's float
# weights (_functional_tensor.rgb_to_grayscale).
_PIL_LUMA = (19595, 38470, 7471)
_FLOAT_LUMA = (0.2989, 0.587, 0.114)


def blend(degenerate: tf.Tensor, image: tf.Tensor, factor: tf.Tensor | float) -> tf.Tensor:
    """`degenerate + factor * (image - degenerate)`: `PIL.Image.blend(degenerate, image, factor)`.

    Args:
      degenerate: `[H, W, C]` (or broadcastable) of `image`'s dtype; for uint8 images it may also
        be float32 holding whole numbers in [0, 255].
      image: uint8 `[H, W, C]`, or float `[H, W, C]` with values in [0, 1].
      factor: scalar; 0 gives `degenerate`, 1 gives `image`, > 1 extrapolates.

    Returns:
      `[H, W, C]` of `image`'s dtype. uint8: computed in float32 as PIL's `ImagingBlend` does
      (float32 factor, product and sum each rounded to float32), clipped to [0, 255] and
      truncated. Float: `factor * image + (1 - factor) * degenerate` clamped to [0, 1], as
      torchvision's tensor `_blend` (exactly `image` at factor 1).
    """
    if image.dtype != tf.uint8:
        factor = tf.cast(factor, image.dtype)
        return tf.clip_by_value(factor * image + (1.0 - factor) * degenerate, 0.0, 1.0)
    low = tf.cast(degenerate, tf.float32)
    value = low + tf.cast(factor, tf.float32) * (tf.cast(image, tf.float32) - low)
    return tf.cast(tf.clip_by_value(value, 0.0, 255.0), tf.uint8)  # the cast truncates


def rgb_to_grayscale(image: tf.Tensor) -> tf.Tensor:
    """Luma of an RGB image. uint8 `[H, W, 3]` -> uint8 `[H, W, 1]` (PIL "L" conversion);
    float `[H, W, 3]` -> float `[H, W, 1]` (torchvision's tensor weights)."""
    if image.dtype == tf.uint8:
        weighted = tf.cast(image, tf.int32) * tf.constant(_PIL_LUMA, tf.int32)
        luma = tf.bitwise.right_shift(tf.reduce_sum(weighted, axis=-1, keepdims=True) + 2**15, 16)
        return tf.cast(luma, tf.uint8)
    weights = tf.constant(_FLOAT_LUMA, image.dtype)
    return tf.reduce_sum(image * weights, axis=-1, keepdims=True)


def _luma(image: tf.Tensor) -> tf.Tensor:
    """The grayscale image, `[H, W, 1]` of `image`'s dtype; a 1-channel image is its own."""
    return image if image.shape[-1] == 1 else rgb_to_grayscale(image)


def adjust_brightness(image: tf.Tensor, factor: tf.Tensor | float) -> tf.Tensor:
    """Multiplies by `factor` (`ImageEnhance.Brightness`). `[H, W, C]` -> same shape and dtype."""
    return blend(tf.zeros_like(image), image, factor)


def adjust_contrast(image: tf.Tensor, factor: tf.Tensor | float) -> tf.Tensor:
    """Blends with the mean luma (`ImageEnhance.Contrast`; uint8: the mean rounded to an integer).
    `[H, W, C]` -> same shape and dtype."""
    luma = _luma(image)
    if image.dtype == tf.uint8:
        total = tf.reduce_sum(tf.cast(luma, tf.int64))
        count = tf.cast(tf.size(luma), tf.int64)
        mean = tf.cast((2 * total + count) // (2 * count), tf.uint8)  # int(mean + 0.5)
    else:
        mean = tf.reduce_mean(luma)
    return blend(tf.fill(tf.shape(image), mean), image, factor)


def adjust_saturation(image: tf.Tensor, factor: tf.Tensor | float) -> tf.Tensor:
    """Blends with the grayscale image (`ImageEnhance.Color`); the identity on 1-channel images.
    `[H, W, C]` -> same shape and dtype."""
    if image.shape[-1] == 1:
        return image
    return blend(rgb_to_grayscale(image), image, factor)


def adjust_color(image: tf.Tensor, factors: tf.Tensor, order: tf.Tensor) -> tf.Tensor:
    """Applies brightness, contrast and saturation in a given order, deterministically.

    Args:
      image: uint8 `[H, W, C]` or float `[H, W, C]` in [0, 1], C = 1 or 3, static C.
      factors: float `[3]`: the brightness, contrast and saturation factors.
      order: int32 `[3]`, a permutation of (0, 1, 2) (0 brightness, 1 contrast, 2 saturation):
        `order[0]` is applied first.

    Returns:
      The adjusted image, same shape and dtype.
    """
    adjustments = (adjust_brightness, adjust_contrast, adjust_saturation)
    shape = image.shape
    for step in range(3):
        branches = [
            lambda fn=fn, img=image, k=k: fn(img, factors[k]) for k, fn in enumerate(adjustments)
        ]
        image = tf.switch_case(order[step], branches)
        image.set_shape(shape)
    return image


def _sample_jitter_params(
    strength: float | tf.Tensor, seed: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """The random part of `color_jitter`: float32 `[3]` factors, each uniform in
    `[max(0, 1 - strength), 1 + strength]`, and an int32 `[3]` uniform random permutation."""
    uniform = tf.random.stateless_uniform([6], seed)
    strength = tf.cast(strength, tf.float32)
    low = tf.maximum(0.0, 1.0 - strength)
    factors = low + (1.0 + strength - low) * uniform[:3]
    return factors, tf.argsort(uniform[3:])


def color_jitter(image: tf.Tensor, strength: float | tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """torchvision `ColorJitter(brightness=strength, contrast=strength, saturation=strength)`.

    Args:
      image: uint8 `[H, W, C]` or float `[H, W, C]` in [0, 1], C = 1 or 3 (static).
      strength: scalar >= 0; 0 leaves the image unchanged.
      seed: int32/int64 `[2]` stateless seed; the same seed and image give the same output.

    Returns:
      The jittered image, same shape and dtype (uint8 clipped, never wrapped around).
    """
    factors, order = _sample_jitter_params(strength, seed)
    return adjust_color(image, factors, order)
