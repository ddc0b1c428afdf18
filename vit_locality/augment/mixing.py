"""CutMix and Mixup on the device, inside the jitted train step: two components, one op.

    mix.cutmix_alpha   Beta(a, a) for CutMix's lam; 0 = no CutMix (Modern: 1.0)
    mix.mixup_alpha    Beta(a, a) for Mixup's lam; 0 = no Mixup
    mix.prob           probability that a batch is mixed; 0 = no mixing (Modern: 1.0)
    mix.switch_prob    with both alphas > 0: probability of CutMix over Mixup

In the step (order 30, after label smoothing; step stream 0). Condition keys `cm` and `mu`
(`cm(a=0.5)`, `cm(p=0.5)` at other values).

Semantics (timm's `Mixup` in "batch" mode, torchvision v2's CutMix box law; docs/augmentation.md):

- One coin per batch: with probability `prob` the batch is mixed, else it passes unchanged.
- With both alphas > 0, CutMix is chosen with probability `switch_prob`, else Mixup.
- `lam ~ Beta(alpha, alpha)`, one value per batch.
- CutMix box: side `int(H * sqrt(1 - lam))` (and likewise for W); centre uniform over the image;
  the box spans `[c - side // 2, c + (side + 1) // 2)` clipped to the image (timm 1.0's
  `rand_bbox`); the partner's pixels are pasted into it and `lam` is corrected to
  `1 - box_area / (H * W)`.
- Mixup: `lam * x + (1 - lam) * x_partner`.
- Partner: the batch reversed within each device's shard (`num_shards` = devices on the mesh), so
  pairing never crosses devices and needs no communication.
- Targets: `lam * smooth(y) + (1 - lam) * smooth(y_partner)` with
  `smooth(y) = (1 - eps) * onehot(y) + eps / K`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from vit_locality.augment import registry
from vit_locality.config_checks import check_range, fail


@dataclasses.dataclass(frozen=True)
class MixSpec:
    """The `config.mix` fields. Mixing is off when `prob == 0` or both alphas are 0."""

    cutmix_alpha: float = 0.0
    mixup_alpha: float = 0.0
    prob: float = 0.0
    switch_prob: float = 0.5

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.cutmix_alpha > 0 or self.mixup_alpha > 0)


def reverse_within_shards(x: jax.Array, num_shards: int) -> jax.Array:
    """The batch (leading axis) reversed inside each of `num_shards` equal contiguous shards."""
    shards = x.reshape(num_shards, x.shape[0] // num_shards, *x.shape[1:])
    return shards[:, ::-1].reshape(x.shape)


def box_at(
    cy: jax.Array, cx: jax.Array, lam: jax.Array, height: int, width: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """timm 1.0's `rand_bbox` around centre (cy, cx): sides `int(H * sqrt(1 - lam))` (and W),
    spanning `[c - side // 2, c + (side + 1) // 2)`, clipped to the image. int32 (y0, y1, x0, x1),
    half-open."""
    cut_ratio = jnp.sqrt(1.0 - lam)
    cut_h = (height * cut_ratio).astype(jnp.int32)
    cut_w = (width * cut_ratio).astype(jnp.int32)
    y0, y1 = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + (cut_h + 1) // 2, 0, height)
    x0, x1 = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + (cut_w + 1) // 2, 0, width)
    return y0, y1, x0, x1


def sample_cutmix_box(
    rng: jax.Array, lam: jax.Array, height: int, width: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """`box_at` a centre drawn uniformly over the image's pixels."""
    rng_y, rng_x = jax.random.split(rng)
    cy = jax.random.randint(rng_y, (), 0, height)
    cx = jax.random.randint(rng_x, (), 0, width)
    return box_at(cy, cx, lam, height, width)


def cutmix(
    rng: jax.Array, images: jax.Array, partner: jax.Array, lam: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Pastes a box of `partner` into `images` ([B, H, W, C]); returns (mixed, corrected lam)."""
    height, width = images.shape[1:3]
    y0, y1, x0, x1 = sample_cutmix_box(rng, lam, height, width)
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    in_box = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)  # [H, W]
    mixed = jnp.where(in_box[None, :, :, None], partner, images)
    area = (y1 - y0) * (x1 - x0)
    return mixed, 1.0 - area.astype(jnp.float32) / (height * width)


def mix_batch(
    rng: jax.Array,
    images: jax.Array,
    targets: jax.Array,
    spec: MixSpec,
    num_shards: int,
) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """Mixes a batch as the module docstring says.

    Args:
      rng: a PRNG key.
      images: float [B, H, W, C].
      targets: float [B, K], already smoothed.
      spec: the mixing config.
      num_shards: devices the batch is sharded over; partners are paired within each shard.

    Returns:
      (images, targets, info) with info = {"lam": the effective lam (1 when not mixed),
      "mixed": 1. when the batch was mixed, "cutmix": 1. when CutMix (not Mixup) was used}.
    """
    if not spec.enabled:
        one = jnp.float32(1.0)
        return images, targets, {"lam": one, "mixed": 0 * one, "cutmix": 0 * one}
    rng_apply, rng_switch, rng_cut_lam, rng_mix_lam, rng_box = jax.random.split(rng, 5)
    partner = reverse_within_shards(images, num_shards)
    apply = jax.random.uniform(rng_apply) < spec.prob

    if spec.cutmix_alpha > 0 and spec.mixup_alpha > 0:
        use_cutmix = jax.random.uniform(rng_switch) < spec.switch_prob
    else:
        use_cutmix = jnp.bool_(spec.cutmix_alpha > 0)

    lam = jnp.float32(1.0)
    mixed = images
    if spec.cutmix_alpha > 0:
        lam_cut = jax.random.beta(rng_cut_lam, spec.cutmix_alpha, spec.cutmix_alpha)
        mixed_cut, lam_cut = cutmix(rng_box, images, partner, lam_cut)
        mixed, lam = mixed_cut, lam_cut
    if spec.mixup_alpha > 0:
        lam_mix = jax.random.beta(rng_mix_lam, spec.mixup_alpha, spec.mixup_alpha)
        mixed_mix = lam_mix * images + (1.0 - lam_mix) * partner
        mixed = jnp.where(use_cutmix, mixed, mixed_mix)
        lam = jnp.where(use_cutmix, lam, lam_mix)

    lam = jnp.where(apply, lam, 1.0).astype(jnp.float32)
    images = jnp.where(apply, mixed, images)
    targets = lam * targets + (1.0 - lam) * reverse_within_shards(targets, num_shards)
    info = {
        "lam": lam,
        "mixed": apply.astype(jnp.float32),
        "cutmix": (apply & use_cutmix).astype(jnp.float32),
    }
    return images, targets, info


def _check(config, context: registry.CheckContext) -> None:
    check_range(config, "mix.prob", 0.0, 1.0, high_open=False)
    check_range(config, "mix.switch_prob", 0.0, 1.0, high_open=False)
    for field in ("mix.cutmix_alpha", "mix.mixup_alpha"):
        check_range(config, field, 0.0, float("inf"), high_open=True)
    mix = config.mix
    if mix.prob > 0 and mix.cutmix_alpha == 0 and mix.mixup_alpha == 0:
        fail("mix.prob", mix.prob, "0 when mix.cutmix_alpha and mix.mixup_alpha are 0")
    # Mixing partners are each device's shard reversed: an odd or 1-image shard pairs an image
    # with itself.
    devices = context.num_devices
    per_device = config.batch_size // devices
    if mix.prob > 0 and (per_device < 2 or per_device % 2):
        fail(
            "batch_size",
            config.batch_size,
            f"with mixing on (mix.prob > 0), an even number of at least 2 images per device: "
            f"a multiple of {2 * devices} for the {devices} devices",
        )


def _step_form(config, num_shards: int):
    spec = MixSpec(**{f.name: config.mix[f.name] for f in dataclasses.fields(MixSpec)})

    def mix(key, images, targets):
        return mix_batch(key, images, targets, spec, num_shards)

    return mix


_FIELDS = {"mix.cutmix_alpha": 0.0, "mix.mixup_alpha": 0.0, "mix.prob": 0.0, "mix.switch_prob": 0.5}
CUTMIX = registry.register(
    registry.Component(
        name="cutmix",
        stage="step",
        fields=_FIELDS,
        on_fields=("mix.cutmix_alpha", "mix.prob"),
        stream=0,
        order=30,
        key="cm",
        row=30,
        title="CutMix",
        switch={"mix.cutmix_alpha": 1.0, "mix.prob": 1.0},
        settings={"a": "mix.cutmix_alpha", "p": "mix.prob"},
        check=_check,
        step_form=_step_form,
    )
)
MIXUP = registry.register(
    registry.Component(
        name="mixup",
        stage="step",
        fields=_FIELDS,
        on_fields=("mix.mixup_alpha", "mix.prob"),
        stream=0,
        order=30,
        key="mu",
        row=40,
        title="Mixup",
        switch={"mix.mixup_alpha": 0.8, "mix.prob": 1.0},  # timm's alpha
        settings={"a": "mix.mixup_alpha", "p": "mix.prob"},
        step_form=_step_form,
    )
)
