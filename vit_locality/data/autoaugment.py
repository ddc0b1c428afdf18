"""AutoAugment with the CIFAR-10 policy, as torchvision does it, in TensorFlow core ops.

Semantics are torchvision's `AutoAugment(AutoAugmentPolicy.CIFAR10)` with its defaults (NEAREST
interpolation, fill 0) on PIL images (torchvision/transforms/autoaugment.py, functional.py,
_functional_pil.py), reproduced bit for bit against Pillow:

- `CIFAR10_POLICY`: the paper's 25 sub-policies, each two `(op_name, probability, magnitude_bin)`.
  One sub-policy is drawn uniformly per image; its op `i` runs when `u_i <= probability`
  (`u_i ~ U[0, 1)`), in order, and a signed op's magnitude is negated with probability 1/2.
- Magnitudes over `num_bins = 10` bins (`_augmentation_space`), float32 as `torch.linspace` gives
  them: ShearX/Y `linspace(0, 0.3)`, TranslateX/Y `linspace(0, 150/331 * width|height)` truncated
  to whole pixels, Rotate `linspace(0, 30)` degrees, Brightness/Color/Contrast/Sharpness
  `linspace(0, 0.9)` used as the factor `1 + m`, Posterize `8 - round(i / ((num_bins - 1) / 4))`
  bits, Solarize threshold `linspace(255, 0)`. The first nine are signed; AutoContrast, Equalize
  and Invert take no magnitude.
- Geometry is PIL's `Image.transform(AFFINE, NEAREST, fillcolor=0)` with torchvision's inverse
  affine matrices: ShearX is a shear of `degrees(atan(m))` about the corner (`center=[0, 0]`),
  i.e. the output pixel `(x, y)` reads the input at `(x + m y, y)`; ShearY reads `(x, y + m x)`;
  TranslateX/Y shift by `int(m)` pixels; Rotate is `PIL.Image.rotate(m)`, counter-clockwise
  about `(W/2, H/2)`. PIL evaluates the coordinates in 16.16 fixed point at pixel centres; since
  the magnitudes are fixed, that arithmetic runs once in NumPy and each op becomes a static gather
  map. (`tf.raw_ops.ImageProjectiveTransformV3` is not used: it works in float32 and rounds half
  away from zero, so at ShearX/Y bins 2 and 6, where whole rows of coordinates land on exact ties,
  up to 17% of the pixels come out one pixel off PIL's.)
- Pointwise ops are PIL's: `ImageEnhance` Brightness/Color/Contrast/Sharpness (a float32 blend
  with a degenerate image, see `color_jitter`; Sharpness's degenerate is the SMOOTH filter
  `[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13`, rounded, with the one-pixel border left unfiltered),
  `ImageOps.posterize`, `solarize` (inverts values `>= threshold`), `autocontrast` (per channel,
  `int(x * 255 / (hi - lo) - lo * 255 / (hi - lo))`, identity when `hi <= lo`), `equalize` (per
  channel, `lut[v] = (step // 2 + count(< v)) // step` with `step = (n - count(max)) // 255`, as
  current Pillow and torchvision's tensor backend) and `invert`.

Images are uint8 `[H, W, C]` with C = 1 or 3 and a static shape. Randomness is stateless, from a
`[2]` integer seed. Every op is one of eight kernels (identity, static gather, static lookup
table, AutoContrast, Equalize, and the Color/Contrast/Sharpness blends) whose parameters for the
whole policy are precomputed tables, so `autoaugment` is a `tf.switch_case` over few small
branches and runs in `tf.data` maps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from vit_locality.augment.autoaugment_policy import (
    CIFAR10_POLICY,
    IDENTITY,
    OP_NAMES,
    SIGNED_OPS,
    OpSpec,
    magnitude,
    op_spec,
    policy_probabilities,
    policy_specs,
)
from vit_locality.data.color_jitter import adjust_contrast, adjust_saturation, blend

__all__ = ["CIFAR10_POLICY", "OP_NAMES", "SIGNED_OPS", "apply_op", "autoaugment"]


def _remap(image: tf.Tensor, source: tf.Tensor) -> tf.Tensor:
    """Output pixel `i` = input pixel `source[i]` (flat), 0 where `source[i] == H * W`."""
    height, width, channels = image.shape
    pixels = tf.concat(
        [tf.reshape(image, [height * width, channels]), tf.zeros([1, channels], tf.uint8)], 0
    )
    return tf.reshape(tf.gather(pixels, source), [height, width, channels])


def _sharpness(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """`ImageEnhance.Sharpness`: blend with the SMOOTH-filtered image (border pixels kept)."""
    height, width, channels = image.shape
    pixels = tf.cast(image, tf.float32)
    padded = tf.pad(pixels, [[1, 1], [1, 1], [0, 0]])
    rows = padded[:-2] + padded[1:-1] + padded[2:]
    sums = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:] + 4.0 * pixels  # 13 * SMOOTH, exact
    smooth = tf.floor((2.0 * sums + 13.0) / 26.0)  # sums / 13 rounded half up, as PIL's filter
    border = np.ones([height, width, channels], bool)
    border[1:-1, 1:-1] = False
    return blend(tf.where(border, pixels, smooth), image, factor)


def _per_channel_lut(image: tf.Tensor, lut: tf.Tensor) -> tf.Tensor:
    """Applies an int32 `[C, 256]` lookup table, one row per channel, to uint8 `[H, W, C]`."""
    index = tf.cast(image, tf.int32) + 256 * tf.range(image.shape[-1])
    return tf.cast(tf.gather(tf.reshape(lut, [-1]), index), tf.uint8)


def _autocontrast(image: tf.Tensor) -> tf.Tensor:
    """`ImageOps.autocontrast()`: per channel, stretch [lo, hi] to [0, 255] (PIL's arithmetic)."""
    low = tf.cast(tf.reduce_min(image, axis=[0, 1]), tf.float64)[:, tf.newaxis]
    high = tf.cast(tf.reduce_max(image, axis=[0, 1]), tf.float64)[:, tf.newaxis]
    stretch = high > low
    scale = 255.0 / tf.where(stretch, high - low, 1.0)
    value = tf.floor(
        tf.clip_by_value(tf.range(256.0, dtype=tf.float64) * scale - low * scale, 0.0, 255.0)
    )
    lut = tf.where(stretch, tf.cast(value, tf.int32), tf.range(256))
    return _per_channel_lut(image, lut)


def _equalize(image: tf.Tensor) -> tf.Tensor:
    """`ImageOps.equalize()`: per channel, PIL's histogram equalization lookup table."""
    height, width, channels = image.shape
    index = tf.reshape(tf.cast(image, tf.int32) + 256 * tf.range(channels), [-1])
    size = 256 * channels
    counts = tf.math.unsorted_segment_sum(tf.ones_like(index), index, num_segments=size)
    histogram = tf.reshape(counts, [channels, 256])
    last_value = tf.cast(tf.reduce_max(image, axis=[0, 1]), tf.int32)
    last_count = tf.gather(histogram, last_value, batch_dims=1)
    step = ((height * width - last_count) // 255)[:, tf.newaxis]
    below = tf.cumsum(histogram, axis=1, exclusive=True)
    safe_step = tf.maximum(step, 1)
    lut = tf.minimum((safe_step // 2 + below) // safe_step, 255)
    return _per_channel_lut(image, tf.where(step > 0, lut, tf.range(256)))


class _Tables(NamedTuple):
    """`OpSpec` fields stacked over specs, as constants: int32 `[N]`, int32 `[N, H * W]`, uint8
    `[N, 256]`, float32 `[N]`."""

    kinds: tf.Tensor
    sources: tf.Tensor
    luts: tf.Tensor
    factors: tf.Tensor


def _tables(specs: tuple[OpSpec, ...]) -> _Tables:
    """Stacks N specs into constant tables, row `i` for spec `i`."""
    return _Tables(
        kinds=tf.constant([spec.kind for spec in specs], tf.int32),
        sources=tf.constant(np.stack([spec.source for spec in specs])),
        luts=tf.constant(np.stack([spec.lut for spec in specs])),
        factors=tf.constant([spec.factor for spec in specs], tf.float32),
    )


def _kernels(image: tf.Tensor, tables: _Tables, key: tf.Tensor) -> list[Callable[[], tf.Tensor]]:
    """The eight kernels on `image` with the parameters of spec `key`, indexed by kind; each
    returns uint8 of `image`'s shape. Parameters are looked up inside the branches, so only the
    taken branch pays for them."""
    return [
        lambda: image,
        lambda: _remap(image, tf.gather(tables.sources, key)),
        lambda: tf.gather(tf.gather(tables.luts, key), tf.cast(image, tf.int32)),
        lambda: _autocontrast(image),
        lambda: _equalize(image),
        lambda: adjust_saturation(image, tf.gather(tables.factors, key)),
        lambda: adjust_contrast(image, tf.gather(tables.factors, key)),
        lambda: _sharpness(image, tf.gather(tables.factors, key)),
    ]


def _check_image(image: tf.Tensor) -> tf.Tensor:
    """The image as a tensor, after checking it is uint8 `[H, W, 1 or 3]` with a static shape."""
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    if image.shape.rank != 3 or not image.shape.is_fully_defined() or image.shape[-1] not in (1, 3):
        raise ValueError(f"expected a static [H, W, 1 or 3] image shape, got {image.shape}")
    return image


def apply_op(
    image: tf.Tensor,
    op_name: str,
    magnitude_bin: int | None,
    num_bins: int = 10,
    negate: bool = False,
    space: str = "autoaugment",
) -> tf.Tensor:
    """One AutoAugment op at a fixed magnitude bin, deterministically (torchvision `_apply_op`).

    Args:
      image: uint8 `[H, W, C]`, C = 1 or 3, static shape.
      op_name: one of `OP_NAMES` (torchvision's names), or "Identity" (RandAugment's).
      magnitude_bin: index into the op's `num_bins` magnitudes; ignored for AutoContrast,
        Equalize, Invert and Identity; None means magnitude 0, as in torchvision.
      num_bins: number of magnitude bins, >= 2 (AutoAugment uses 10, RandAugment and
        TrivialAugmentWide 31).
      negate: use the negative magnitude; ignored for unsigned ops.
      space: the magnitude ranges, "autoaugment" (AutoAugment, RandAugment) or "wide"
        (TrivialAugmentWide): `autoaugment_policy.magnitudes`.

    Returns:
      uint8 `[H, W, C]`.
    """
    image = _check_image(image)
    if op_name not in (*OP_NAMES, "Identity"):
        raise ValueError(f"unknown op {op_name!r}; expected one of {OP_NAMES} or Identity")
    if num_bins < 2 or not (magnitude_bin is None or 0 <= magnitude_bin < num_bins):
        raise ValueError(
            f"need num_bins >= 2 and 0 <= magnitude_bin < num_bins, got "
            f"{magnitude_bin} of {num_bins}"
        )
    height, width = image.shape[0], image.shape[1]
    signed = magnitude(op_name, magnitude_bin, num_bins, height, width, negate, space)
    spec = op_spec(op_name, signed, height, width)
    return _kernels(image, _tables((spec,)), tf.constant(0))[spec.kind]()


def _sample_policy_decisions(seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The random choices of one AutoAugment step (torchvision `AutoAugment.get_params`).

    Args:
      seed: int32/int64 `[2]` stateless seed.

    Returns:
      `(policy_index, apply, negate)`: int32 scalar in [0, 25), the sub-policy; bool `[2]`, op `i`
      runs (`u_i <= probability_i`); bool `[2]`, op `i`'s magnitude is negated if the op is signed
      (each a fair coin).
    """
    uniform = tf.random.stateless_uniform([5], seed)
    num_policies = len(CIFAR10_POLICY)
    policy_index = tf.minimum(tf.cast(uniform[0] * num_policies, tf.int32), num_policies - 1)
    probabilities = tf.constant(policy_probabilities())
    apply = uniform[1:3] <= tf.gather(probabilities, policy_index)
    return policy_index, apply, uniform[3:5] < 0.5


def autoaugment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """torchvision `AutoAugment(AutoAugmentPolicy.CIFAR10)` on one image.

    Args:
      image: uint8 `[H, W, C]`, C = 1 or 3, static shape.
      seed: int32/int64 `[2]` stateless seed; the same seed and image give the same output.

    Returns:
      uint8 `[H, W, C]`.
    """
    image = _check_image(image)
    shape = image.shape
    tables = _tables(policy_specs(shape[0], shape[1]))
    policy_index, apply, negate = _sample_policy_decisions(seed)
    keys = (policy_index * 2 + tf.range(2)) * 2 + tf.cast(negate, tf.int32)
    kinds = tf.where(apply, tf.gather(tables.kinds, keys), IDENTITY)
    for slot in range(2):
        image = tf.switch_case(kinds[slot], _kernels(image, tables, keys[slot]))
        image.set_shape(shape)
    return image
