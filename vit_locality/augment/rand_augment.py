"""RandAugment and TrivialAugmentWide as torchvision does them: their policies as data (NumPy) and
their forms in JAX, for the input on the accelerator. The tf.data forms are
`vit_locality.data.rand_augment`; both run AutoAugment's kernels (`autoaugment_policy`,
`on_device`), whose ops are torchvision's on PIL images, bit for bit against Pillow.

Semantics (torchvision/transforms/autoaugment.py, `RandAugment`, `TrivialAugmentWide`, with
their defaults: NEAREST interpolation, fill 0):

- The ops, in torchvision's order (`OPS`): Identity, ShearX, ShearY, TranslateX, TranslateY,
  Rotate, Brightness, Color, Contrast, Sharpness, Posterize, Solarize, AutoContrast, Equalize
  (AutoAugment's without Invert, plus Identity). The first nine after Identity are signed.
- `RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=31)`: `num_ops` times, one op drawn
  uniformly of the 14 (with replacement), at bin `magnitude` of AutoAugment's magnitude space
  over 31 bins (`autoaugment_policy.magnitudes(..., space="autoaugment")`), a signed op's
  magnitude negated with probability 1/2; the ops run one after the other.
- `TrivialAugmentWide(num_magnitude_bins=31)`: one op drawn uniformly of the 14, one bin drawn
  uniformly of the 31 of the wide space (`space="wide"`: shear 0.99, translation 32 pixels,
  rotation 135 degrees, enhance 0.99, Posterize `8 - round(i / 5)` bits, Solarize
  `linspace(255, 0)`), a signed op's magnitude negated with probability 1/2.

Every (op, bin, sign) is one precomputed `OpSpec`, so an image's choice is an index into tables:
`rand_augment_specs` (14 ops x 2 signs) and `trivial_augment_specs` (14 ops x 31 bins x 2 signs,
the geometric ones a gather map of H * W int32 each: 3.5 MB at 32 px).

JAX: per image uint8 `[H, W, C]` (C = 1 or 3) and a PRNG key (`rand_augment`,
`trivial_augment`), and on a batch with one key per image (`*_batch`, a `jax.vmap`); jit-able.
Only the random draws differ from the tf.data forms (JAX keys against TensorFlow's stateless
seeds); the same decisions give the same pixels (tests/test_rand_augment.py). No TensorFlow.

Two components of the protocol, per image after crop and flip:

    aug.rand_augment      True: RandAugment (stream 3), condition key `ra`
    aug.trivial_augment   True: TrivialAugmentWide (stream 4), condition key `ta`
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vit_locality.augment import on_device, registry
from vit_locality.augment.autoaugment_policy import OP_NAMES, OpSpec, magnitude, op_spec

# torchvision's order: Identity, then AutoAugment's ops without Invert.
OPS: tuple[str, ...] = ("Identity", *(name for name in OP_NAMES if name != "Invert"))
NUM_MAGNITUDE_BINS = 31
RAND_AUGMENT_NUM_OPS = 2
RAND_AUGMENT_MAGNITUDE = 9


def _check(num_bins: int, magnitude_bin: int | None = None) -> None:
    if num_bins < 2:
        raise ValueError(f"num_magnitude_bins must be >= 2, got {num_bins}")
    if magnitude_bin is not None and not 0 <= magnitude_bin < num_bins:
        raise ValueError(f"magnitude must be in [0, {num_bins}), got {magnitude_bin}")


@functools.cache
def rand_augment_specs(
    height: int,
    width: int,
    magnitude_bin: int = RAND_AUGMENT_MAGNITUDE,
    num_bins: int = NUM_MAGNITUDE_BINS,
) -> tuple[OpSpec, ...]:
    """RandAugment's `OpSpec`s at index `op * 2 + negate` (`op` into `OPS`)."""
    _check(num_bins, magnitude_bin)
    return tuple(
        op_spec(
            name, magnitude(name, magnitude_bin, num_bins, height, width, negate), height, width
        )
        for name in OPS
        for negate in (False, True)
    )


@functools.cache
def trivial_augment_specs(
    height: int, width: int, num_bins: int = NUM_MAGNITUDE_BINS
) -> tuple[OpSpec, ...]:
    """TrivialAugmentWide's `OpSpec`s at index `(op * num_bins + bin) * 2 + negate`."""
    _check(num_bins)
    return tuple(
        op_spec(
            name,
            magnitude(name, magnitude_bin, num_bins, height, width, negate, space="wide"),
            height,
            width,
        )
        for name in OPS
        for magnitude_bin in range(num_bins)
        for negate in (False, True)
    )


def _uniform_index(uniform: jax.Array, count: int) -> jax.Array:
    """An int32 uniform over [0, count) from a uniform float in [0, 1)."""
    return jnp.minimum((uniform * count).astype(jnp.int32), count - 1)


@functools.cache
def _stacked(builder, *args) -> tuple[np.ndarray, ...]:
    """`OpSpec` fields of `builder(*args)` stacked over specs (NumPy, made once)."""
    specs = builder(*args)
    return (
        np.array([spec.kind for spec in specs], np.int32),
        np.stack([spec.source for spec in specs]),
        np.stack([spec.lut for spec in specs]),
        np.array([spec.factor for spec in specs], np.float32),
    )


class _Tables:
    """`OpSpec` fields stacked over specs, as JAX constants."""

    def __init__(self, builder, *args):
        self.kinds, self.sources, self.luts, self.factors = map(
            jnp.asarray, _stacked(builder, *args)
        )

    def apply(self, image: jax.Array, index: jax.Array) -> jax.Array:
        kernels = on_device._kernels(
            image, self.sources[index], self.luts[index], self.factors[index]
        )
        return jax.lax.switch(self.kinds[index], kernels)


def rand_augment_decisions(
    key: jax.Array, num_ops: int = RAND_AUGMENT_NUM_OPS
) -> tuple[jax.Array, jax.Array]:
    """One image's RandAugment draws: int32 `[num_ops]` ops (into `OPS`), bool `[num_ops]`
    negations (used by signed ops only)."""
    uniform = jax.random.uniform(key, (2, num_ops))
    return _uniform_index(uniform[0], len(OPS)), uniform[1] < 0.5


def rand_augment_apply(
    image: jax.Array,
    ops: jax.Array,
    negate: jax.Array,
    magnitude_bin: int = RAND_AUGMENT_MAGNITUDE,
    num_bins: int = NUM_MAGNITUDE_BINS,
) -> jax.Array:
    """RandAugment's ops `ops` (int `[num_ops]`, into `OPS`) with negations `negate` (bool
    `[num_ops]`) on one uint8 `[H, W, C]`, in order, deterministically."""
    tables = _Tables(rand_augment_specs, *image.shape[:2], magnitude_bin, num_bins)
    negate = jnp.asarray(negate).astype(jnp.int32)
    for slot in range(jnp.shape(ops)[0]):
        image = tables.apply(image, ops[slot] * 2 + negate[slot])
    return image


def rand_augment(
    image: jax.Array,
    key: jax.Array,
    num_ops: int = RAND_AUGMENT_NUM_OPS,
    magnitude_bin: int = RAND_AUGMENT_MAGNITUDE,
    num_bins: int = NUM_MAGNITUDE_BINS,
) -> jax.Array:
    """torchvision `RandAugment(num_ops, magnitude_bin, num_bins)` on one uint8 `[H, W, C]`."""
    ops, negate = rand_augment_decisions(key, num_ops)
    return rand_augment_apply(image, ops, negate, magnitude_bin, num_bins)


def trivial_augment_decisions(
    key: jax.Array, num_bins: int = NUM_MAGNITUDE_BINS
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One image's TrivialAugmentWide draws: int32 op (into `OPS`), int32 bin in
    [0, num_bins) (used by binned ops only), bool negation (used by signed ops only)."""
    uniform = jax.random.uniform(key, (3,))
    return (
        _uniform_index(uniform[0], len(OPS)),
        _uniform_index(uniform[1], num_bins),
        uniform[2] < 0.5,
    )


def trivial_augment_apply(
    image: jax.Array,
    op: jax.Array,
    magnitude_bin: jax.Array,
    negate: jax.Array,
    num_bins: int = NUM_MAGNITUDE_BINS,
) -> jax.Array:
    """TrivialAugmentWide's op `op` (into `OPS`) at bin `magnitude_bin` of the wide space,
    negated when `negate`, on one uint8 `[H, W, C]`, deterministically."""
    tables = _Tables(trivial_augment_specs, *image.shape[:2], num_bins)
    negate = jnp.asarray(negate).astype(jnp.int32)
    return tables.apply(image, (op * num_bins + magnitude_bin) * 2 + negate)


def trivial_augment(
    image: jax.Array, key: jax.Array, num_bins: int = NUM_MAGNITUDE_BINS
) -> jax.Array:
    """torchvision `TrivialAugmentWide(num_bins)` on one uint8 `[H, W, C]`."""
    op, magnitude_bin, negate = trivial_augment_decisions(key, num_bins)
    return trivial_augment_apply(image, op, magnitude_bin, negate, num_bins)


def rand_augment_batch(images: jax.Array, keys: jax.Array, **options) -> jax.Array:
    """`rand_augment` on uint8 `[B, H, W, C]` with one key per image (`keys` `[B]`)."""
    return jax.vmap(lambda image, key: rand_augment(image, key, **options))(images, keys)


def trivial_augment_batch(images: jax.Array, keys: jax.Array, **options) -> jax.Array:
    """`trivial_augment` on uint8 `[B, H, W, C]` with one key per image (`keys` `[B]`)."""
    return jax.vmap(lambda image, key: trivial_augment(image, key, **options))(images, keys)


# ---------------------------------------------------------------- the two components


def _tf_rand_augment(config):
    from vit_locality.data.rand_augment import rand_augment as tf_rand_augment

    return tf_rand_augment


def _tf_trivial_augment(config):
    from vit_locality.data.rand_augment import trivial_augment as tf_trivial_augment

    return tf_trivial_augment


RAND_AUGMENT = registry.register(
    registry.Component(
        name="rand_augment",
        stage="image",
        fields={"aug.rand_augment": False},  # True: RandAugment(num_ops=2, magnitude=9), 31 bins
        on_fields=("aug.rand_augment",),
        stream=3,
        key="ra",
        row=12,
        title="RandAugment",
        switch={"aug.rand_augment": True},
        tf_form=_tf_rand_augment,
        device_form=lambda config: lambda key, image: rand_augment(image, key),
    )
)
TRIVIAL_AUGMENT = registry.register(
    registry.Component(
        name="trivial_augment",
        stage="image",
        fields={"aug.trivial_augment": False},  # True: TrivialAugmentWide, 31 bins
        on_fields=("aug.trivial_augment",),
        stream=4,
        key="ta",
        row=14,
        title="TrivialAug.",
        switch={"aug.trivial_augment": True},
        tf_form=_tf_trivial_augment,
        device_form=lambda config: lambda key, image: trivial_augment(image, key),
    )
)
