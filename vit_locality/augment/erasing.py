"""Random erasing on the device, inside the jitted train step (timm's `RandomErasing`, count 1).

    aug.random_erasing        probability that an image gets a box; 0 = off
    aug.random_erasing_mode   pixel: N(0, 1) noise per pixel | const: zeros (the mean colour)

In the step (order 10, first, on the normalized images; step stream 1). Condition key `re`.

Semantics, per image and independently across the batch (timm `timm/data/random_erasing.py`):

- With probability `prob` the image gets one erased box, else it passes unchanged.
- Up to `attempts` (10) tries: target area `U(min_area, max_area) * H * W` (fractions 0.02 and
  1/3), aspect ratio `exp(U(log min_aspect, -log min_aspect))` (h / w in [0.3, 1/0.3]),
  `h = round(sqrt(area * aspect))`, `w = round(sqrt(area / aspect))`; the first try with
  `h < H` and `w < W` is used; when none fits, the image is left unchanged.
- The box's top-left corner is uniform over the positions where it fits (`top` in
  `[0, H - h]`, `left` in `[0, W - w]`, both inclusive).
- Fill: `pixel` draws N(0, 1) noise per pixel and channel; `const` writes zeros. Both are meant
  for normalized images (zero is then the dataset's mean colour), so erasing runs after
  normalization.

Everything is a pure function of the PRNG key: the same key erases the same boxes with the same
noise, under `jax.jit` or not.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from vit_locality.augment import registry
from vit_locality.config_checks import check_choice, check_range

MODES = ("pixel", "const")


@dataclasses.dataclass(frozen=True)
class ErasingSpec:
    """The `config.aug.random_erasing*` fields plus timm's fixed box law. Off when `prob == 0`.

    Attributes:
      prob: probability that an image gets a box.
      mode: `pixel` (N(0, 1) noise per pixel and channel) or `const` (zeros).
      min_area, max_area: bounds of the target box area, as fractions of the image area.
      min_aspect: the aspect ratio h / w is log-uniform in [min_aspect, 1 / min_aspect].
      attempts: tries at drawing a box that fits before giving up on the image.
    """

    prob: float = 0.0
    mode: str = "pixel"
    min_area: float = 0.02
    max_area: float = 1 / 3
    min_aspect: float = 0.3
    attempts: int = 10

    @property
    def enabled(self) -> bool:
        return self.prob > 0


def sample_erasing_box(
    rng: jax.Array, height: int, width: int, spec: ErasingSpec
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """One box by timm's law: int32 scalars (top, left, h, w) and bool `found` (some try fit).

    The box covers rows `[top, top + h)` and columns `[left, left + w)`; when `found` is False,
    h = w = 0 (an empty box).
    """
    rng_area, rng_aspect, rng_top, rng_left = jax.random.split(rng, 4)
    area = (
        jax.random.uniform(rng_area, (spec.attempts,), minval=spec.min_area, maxval=spec.max_area)
        * height
        * width
    )
    log_aspect = math.log(spec.min_aspect)
    aspect = jnp.exp(
        jax.random.uniform(rng_aspect, (spec.attempts,), minval=log_aspect, maxval=-log_aspect)
    )
    h = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    w = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (h < height) & (w < width)
    first = jnp.argmax(fits)  # the first try that fits (0 when none does)
    found = fits[first]
    h = jnp.where(found, h[first], 0)
    w = jnp.where(found, w[first], 0)
    top = jax.random.randint(rng_top, (), 0, height - h + 1)
    left = jax.random.randint(rng_left, (), 0, width - w + 1)
    return top, left, h, w, found


def erase_image(rng: jax.Array, image: jax.Array, spec: ErasingSpec) -> jax.Array:
    """Random erasing of one float image [H, W, C]; returns [H, W, C] of the same dtype."""
    rng_apply, rng_box, rng_noise = jax.random.split(rng, 3)
    height, width = image.shape[:2]
    top, left, h, w, found = sample_erasing_box(rng_box, height, width, spec)
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    in_box = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)  # [H, W]
    erase = in_box & found & (jax.random.uniform(rng_apply) < spec.prob)
    if spec.mode == "pixel":
        fill = jax.random.normal(rng_noise, image.shape, image.dtype)
    else:
        fill = jnp.zeros_like(image)
    return jnp.where(erase[:, :, None], fill, image)


def random_erasing(rng: jax.Array, images: jax.Array, spec: ErasingSpec) -> jax.Array:
    """Random erasing of a normalized batch: float [B, H, W, C] -> [B, H, W, C].

    Image b uses the key `jax.random.split(rng, B)[b]`, so the result does not depend on how the
    batch is sharded. The identity (no randomness drawn) when `spec.prob == 0`.
    """
    if not spec.enabled:
        return images
    if spec.mode not in MODES:
        raise ValueError(f"random erasing mode {spec.mode!r} unknown; allowed: {MODES}")
    keys = jax.random.split(rng, images.shape[0])
    return jax.vmap(lambda key, image: erase_image(key, image, spec))(keys, images)


def _check(config, context: registry.CheckContext) -> None:
    check_range(config, "aug.random_erasing", 0.0, 1.0, high_open=False)
    check_choice(config, "aug.random_erasing_mode", MODES)


def _step_form(config, num_shards: int):
    spec = ErasingSpec(config.aug.random_erasing, config.aug.random_erasing_mode)
    return lambda key, images, targets: (random_erasing(key, images, spec), targets, {})


RANDOM_ERASING = registry.register(
    registry.Component(
        name="random_erasing",
        stage="step",
        fields={"aug.random_erasing": 0.0, "aug.random_erasing_mode": "pixel"},
        on_fields=("aug.random_erasing",),
        stream=1,
        order=10,
        key="re",
        row=50,
        title="Erasing",
        switch={"aug.random_erasing": 1.0, "aug.random_erasing_mode": "pixel"},
        settings={"p": "aug.random_erasing", "mode": "aug.random_erasing_mode"},
        check=_check,
        step_form=_step_form,
    )
)
