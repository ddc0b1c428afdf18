"""ResizeMix (Qin et al. 2020, "ResizeMix: Mixing Data with Preserved Object Information and True
Labels") on the device, inside the jitted train step, in the style of `mixing`'s CutMix.

Semantics are the authors' code (github.com/JayQine/ResizeMix: `run_apis/trainer.py`, the
`resizemix` branch, and `tools/utils.py` `getbox_new`; CIFAR configs `alpha=0.1, beta=0.8`):

- One coin per batch: with probability `prob` the batch is mixed, else it passes unchanged (the
  authors mix every batch: `prob = 1`).
- One scale rate per batch, `rate ~ U(scale_min, scale_max)` (0.1, 0.8).
- The partner image is shrunk whole by `F.interpolate(x, scale_factor=rate)`, PyTorch's default
  NEAREST mode: the small image is `floor(H * rate) x floor(W * rate)` (`h x w`), and its pixel
  `(i, j)` is the partner's `(min(floor(i * s), H - 1), min(floor(j * s), W - 1))` with
  `s = float32(1 / rate)` and the product in float32 (ATen's `nearest_idx`).
- Per image, a box of exactly `h x w` that always lies inside the image: a centre row
  `cy ~ randint(0, H)` and column `cx ~ randint(0, W)`, `y0 = clip(cy - h // 2, 0, H)`,
  `y1 = clip(y0 + h, 0, H)`, `y0 = clip(y1 - h, 0, H)` (likewise x); the small partner is
  pasted into it.
- `lam = 1 - h * w / (H * W)`, the same for the whole batch; targets
  `lam * y + (1 - lam) * y_partner` (already smoothed, as `mixing`).
- Partner: the batch reversed within each device's shard (`mixing.reverse_within_shards`), as
  CutMix here, in place of the authors' `randperm`.

Unlike CutMix, the partner is not cropped but shown whole, shrunk: its label weight comes with
the complete object, and only the host image is a partial region. Everything is a gather and a
select, exact for any dtype; a pure function of the PRNG key.

The component: `mix.resizemix_prob` (0 = off), `mix.resizemix_scale_min/max`; in the step after
label smoothing (order 35, step stream 3), never with CutMix/Mixup on; condition key `rm`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vit_locality.augment import registry
from vit_locality.augment.mixing import reverse_within_shards
from vit_locality.config_checks import check_range, fail


@dataclasses.dataclass(frozen=True)
class ResizeMixSpec:
    """ResizeMix's options. Off when `prob == 0`.

    Attributes:
      prob: probability that a batch is mixed (the authors: 1).
      scale_min, scale_max: the scale rate's uniform range (the authors: 0.1, 0.8), in (0, 1).
    """

    prob: float = 0.0
    scale_min: float = 0.1
    scale_max: float = 0.8

    def __post_init__(self):
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"resizemix prob must be in [0, 1], got {self.prob}")
        if not 0.0 < self.scale_min <= self.scale_max < 1.0:
            raise ValueError(
                f"resizemix scales need 0 < scale_min <= scale_max < 1, got "
                f"{self.scale_min}, {self.scale_max}"
            )

    @property
    def enabled(self) -> bool:
        return self.prob > 0


class ResizeMixDraws(NamedTuple):
    """One batch's random choices: `apply` (bool scalar), `rate` (float32 scalar), `cy`, `cx`
    (int32 `[B]`, each image's box centre)."""

    apply: jax.Array
    rate: jax.Array
    cy: jax.Array
    cx: jax.Array


def sample_draws(rng: jax.Array, batch: int, height: int, width: int, spec: ResizeMixSpec):
    """The batch's `ResizeMixDraws`: the coin, `rate ~ U(scale_min, scale_max)`, and per image a
    centre uniform over the rows and over the columns."""
    rng_apply, rng_rate, rng_y, rng_x = jax.random.split(rng, 4)
    return ResizeMixDraws(
        apply=jax.random.uniform(rng_apply) < spec.prob,
        rate=jax.random.uniform(rng_rate, minval=spec.scale_min, maxval=spec.scale_max),
        cy=jax.random.randint(rng_y, (batch,), 0, height),
        cx=jax.random.randint(rng_x, (batch,), 0, width),
    )


def small_size(size: int, rate: jax.Array) -> jax.Array:
    """int32 `floor(size * rate)`, the product in float64 as PyTorch's output size."""
    with jax.enable_x64(True):
        return jnp.floor(size * jnp.asarray(rate).astype(jnp.float64)).astype(jnp.int32)


def _source_index(offset: jax.Array, size: int, rate: jax.Array) -> jax.Array:
    """ATen's nearest source index of small-image index `offset`: `min(floor(offset * s),
    size - 1)` with `s = float32(1 / rate)` (the division in float64) and a float32 product."""
    with jax.enable_x64(True):
        scale = (1.0 / jnp.asarray(rate).astype(jnp.float64)).astype(jnp.float32)
    source = jnp.floor(offset.astype(jnp.float32) * scale).astype(jnp.int32)
    return jnp.clip(source, 0, size - 1)


def _box_start(centre: jax.Array, side: jax.Array, size: int) -> jax.Array:
    """`getbox_new`'s start of a `side`-long box about `centre`, moved inside [0, size)."""
    start = jnp.clip(centre - side // 2, 0, size)
    end = jnp.clip(start + side, 0, size)
    return jnp.clip(end - side, 0, size)


def paste_resized(
    images: jax.Array, partner: jax.Array, rate: jax.Array, cy: jax.Array, cx: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Pastes each `partner` image (`[B, H, W, C]`), shrunk by `rate` with NEAREST, into a box of
    its size about (`cy[b]`, `cx[b]`) of `images[b]`; returns (mixed, lam = 1 - box area / HW)."""
    height, width = images.shape[1:3]
    small_h, small_w = small_size(height, rate), small_size(width, rate)
    y0 = _box_start(cy, small_h, height)[:, None]  # [B, 1]
    x0 = _box_start(cx, small_w, width)[:, None]
    rows, cols = jnp.arange(height)[None, :], jnp.arange(width)[None, :]
    in_rows = (rows >= y0) & (rows < y0 + small_h)  # [B, H]
    in_cols = (cols >= x0) & (cols < x0 + small_w)  # [B, W]
    source_rows = _source_index(jnp.maximum(rows - y0, 0), height, rate)  # [B, H]
    source_cols = _source_index(jnp.maximum(cols - x0, 0), width, rate)  # [B, W]
    pasted = jax.vmap(lambda image, r, c: image[r[:, None], c[None, :]])(
        partner, source_rows, source_cols
    )  # [B, H, W, C]: per image, a batched gather that stays on the image's device
    in_box = in_rows[:, :, None] & in_cols[:, None, :]
    mixed = jnp.where(in_box[..., None], pasted, images)
    # In float64, then rounded once to float32 (XLA may divide by a constant as a product with
    # its rounded reciprocal, a second rounding in float32).
    with jax.enable_x64(True):
        area = (small_h * small_w).astype(jnp.float64)
        lam = (1.0 - area / (height * width)).astype(jnp.float32)
    return mixed, lam


def resizemix_batch(
    rng: jax.Array,
    images: jax.Array,
    targets: jax.Array,
    spec: ResizeMixSpec,
    num_shards: int,
) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """Mixes a batch as the module docstring says.

    Args:
      rng: a PRNG key (all of the batch's draws: `sample_draws`).
      images: `[B, H, W, C]`, any dtype (float in the step).
      targets: float `[B, K]`, already smoothed.
      spec: the options; off (the batch unchanged) when `prob == 0`.
      num_shards: devices the batch is sharded over; partners are paired within each shard.

    Returns:
      (images, targets, info) with info = {"lam": the effective lam (1 when not mixed),
      "mixed": 1. when the batch was mixed}.
    """
    one = jnp.float32(1.0)
    if not spec.enabled:
        return images, targets, {"lam": one, "mixed": 0 * one}
    batch, height, width = images.shape[:3]
    draws = sample_draws(rng, batch, height, width, spec)
    partner = reverse_within_shards(images, num_shards)
    mixed, lam = paste_resized(images, partner, draws.rate, draws.cy, draws.cx)
    lam = jnp.where(draws.apply, lam, 1.0).astype(jnp.float32)
    images = jnp.where(draws.apply, mixed, images)
    targets = lam * targets + (1.0 - lam) * reverse_within_shards(targets, num_shards)
    return images, targets, {"lam": lam, "mixed": draws.apply.astype(jnp.float32)}


# ---------------------------------------------------------------- the component


def _check(config, context: registry.CheckContext) -> None:
    check_range(config, "mix.resizemix_prob", 0.0, 1.0, high_open=False)
    low, high = config.mix.resizemix_scale_min, config.mix.resizemix_scale_max
    if not 0.0 < low <= high < 1.0:
        fail("mix.resizemix_scale_min", low, f"0 < it <= mix.resizemix_scale_max={high} < 1")
    if config.mix.resizemix_prob > 0 and config.mix.prob > 0:
        fail(
            "mix.resizemix_prob",
            config.mix.resizemix_prob,
            "0 while CutMix/Mixup are on (mix.prob > 0): one mixing at a time, as its authors",
        )
    per_device = config.batch_size // context.num_devices
    if config.mix.resizemix_prob > 0 and (per_device < 2 or per_device % 2):
        fail("batch_size", config.batch_size, f"with ResizeMix on, an even number of at least 2 "
             f"images per device: a multiple of {2 * context.num_devices}")  # fmt: skip


def _step_form(config, num_shards: int):
    mix = config.mix
    spec = ResizeMixSpec(mix.resizemix_prob, mix.resizemix_scale_min, mix.resizemix_scale_max)
    return lambda key, images, targets: resizemix_batch(key, images, targets, spec, num_shards)


RESIZEMIX = registry.register(
    registry.Component(
        name="resizemix",
        stage="step",
        fields={
            "mix.resizemix_prob": 0.0,  # probability that a batch is ResizeMixed; 0 = off
            "mix.resizemix_scale_min": 0.1,  # the scale rate's range (the authors')
            "mix.resizemix_scale_max": 0.8,
        },
        on_fields=("mix.resizemix_prob",),
        stream=3,
        order=35,
        key="rm",
        row=45,
        title="ResizeMix",
        switch={"mix.resizemix_prob": 1.0},
        settings={"p": "mix.resizemix_prob"},
        check=_check,
        step_form=_step_form,
    )
)
