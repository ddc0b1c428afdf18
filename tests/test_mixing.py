"""CutMix / Mixup / label smoothing on the device, against docs/augmentation.md's semantics and
a NumPy port of timm's box sampling."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from vit_locality.augment import mixing
from vit_locality.augment.label_smoothing import smooth_labels
from vit_locality.parallel import sharding

CUTMIX = mixing.MixSpec(cutmix_alpha=1.0, prob=1.0)
MIXUP = mixing.MixSpec(mixup_alpha=0.8, prob=1.0)


def distinct_images(batch=8, size=16):
    """Image b is filled with the value b + 1 (plus a pixel ramp), so sources are identifiable."""
    ramp = jnp.arange(size * size, dtype=jnp.float32).reshape(1, size, size, 1) / 1e4
    return jnp.broadcast_to(
        jnp.arange(1, batch + 1, dtype=jnp.float32)[:, None, None, None] + ramp,
        (batch, size, size, 3),
    )


def numpy_rand_bbox(cy: int, cx: int, lam: float, size: int) -> tuple[int, int, int, int]:
    """timm 1.0.31's `timm.data.mixup.rand_bbox` (margin 0) around a given centre."""
    cut = int(size * np.sqrt(1 - lam))
    yl, yh = np.clip(cy - cut // 2, 0, size), np.clip(cy + (cut + 1) // 2, 0, size)
    xl, xh = np.clip(cx - cut // 2, 0, size), np.clip(cx + (cut + 1) // 2, 0, size)
    return int(yl), int(yh), int(xl), int(xh)


def numpy_cutmix_lam(rng: np.random.Generator, alpha: float, size: int) -> float:
    """timm.data.mixup: lam ~ Beta, rand_bbox with margin 0, correct_lam from the clipped box."""
    lam = rng.beta(alpha, alpha)
    cy, cx = rng.integers(0, size), rng.integers(0, size)
    yl, yh, xl, xh = numpy_rand_bbox(cy, cx, lam, size)
    return 1.0 - (yh - yl) * (xh - xl) / float(size * size)


@partial(jax.jit, static_argnames=("spec", "num_shards"))
def mix(rng, images, targets, spec, num_shards=1):
    return mixing.mix_batch(rng, images, targets, spec, num_shards)


def test_smooth_labels_masses():
    t = smooth_labels(jnp.array([3, 0]), 10, 0.1)
    np.testing.assert_allclose(t.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(t[0, 3], 0.9 + 0.01, rtol=1e-6)
    np.testing.assert_allclose(t[0, 0], 0.01, rtol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_pixels_box_and_lam(seed):
    images = distinct_images()
    partner = images[::-1]
    labels = jnp.arange(8) % 10
    targets = smooth_labels(labels, 10, 0.1)
    out, t, info = mix(jax.random.key(seed), images, targets, CUTMIX)
    from_self = np.asarray(out == images).all(-1)
    from_partner = np.asarray(out == partner).all(-1)
    assert (from_self | from_partner).all(), "every pixel comes from one of the two images"
    pasted = from_partner & ~from_self
    for b in range(8):  # the pasted region is one axis-aligned box, the same for every image
        rows, cols = np.nonzero(pasted[b])
        if rows.size:
            assert pasted[b, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
        np.testing.assert_array_equal(pasted[b], pasted[0])
    lam = float(info["lam"])
    assert lam == pytest.approx(1.0 - pasted[0].mean(), abs=1e-6)
    # Targets: lam * smooth(y) + (1 - lam) * smooth(y_partner); rows sum to one.
    np.testing.assert_allclose(t.sum(-1), 1.0, rtol=1e-5)
    expected = lam * targets + (1 - lam) * targets[::-1]
    np.testing.assert_allclose(t, expected, rtol=1e-5)
    np.testing.assert_allclose(
        t[0, labels[0]], lam * 0.9 + 0.01 + (labels[0] == labels[7]) * (1 - lam) * 0.9, rtol=1e-5
    )


def test_prob_zero_is_identity():
    images = distinct_images()
    targets = smooth_labels(jnp.arange(8), 10, 0.0)
    for spec in (mixing.MixSpec(cutmix_alpha=1.0, prob=0.0), mixing.MixSpec()):
        out, t, info = mix(jax.random.key(0), images, targets, spec)
        np.testing.assert_array_equal(out, images)
        np.testing.assert_array_equal(t, targets)
        assert float(info["lam"]) == 1.0


def test_prob_is_the_fraction_of_mixed_batches():
    images, targets = distinct_images(4, 8), smooth_labels(jnp.arange(4), 10, 0.0)
    spec = mixing.MixSpec(cutmix_alpha=1.0, prob=0.3)
    keys = jax.random.split(jax.random.key(0), 4000)
    mixed = jax.vmap(lambda k: mix(k, images, targets, spec)[2]["mixed"])(keys)
    assert float(mixed.mean()) == pytest.approx(0.3, abs=0.03)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / a.size
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / b.size
    return float(np.abs(cdf_a - cdf_b).max())


@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_cutmix_lam_distribution_matches_numpy_port_of_timm(alpha):
    size, n = 32, 4000
    images = jnp.zeros((2, size, size, 1))
    targets = jnp.zeros((2, 10))
    spec = mixing.MixSpec(cutmix_alpha=alpha, prob=1.0)
    keys = jax.random.split(jax.random.key(1), n)
    ours = np.asarray(jax.vmap(lambda k: mix(k, images, targets, spec)[2]["lam"])(keys))
    rng = np.random.default_rng(0)
    reference = np.array([numpy_cutmix_lam(rng, alpha, size) for _ in range(n)])
    # Two-sample KS at n = m = 4000: the 0.1% critical value is about 0.044.
    assert ks_statistic(ours, reference) < 0.044
    assert ours.mean() == pytest.approx(reference.mean(), abs=0.02)
    assert (ours == 1.0).mean() == pytest.approx((reference == 1.0).mean(), abs=0.02)


def test_cutmix_box_is_timms_at_every_centre_and_side():
    size = 32
    lams = np.float32(1.0) - (np.arange(size + 1, dtype=np.float32) / size) ** 2  # every side
    lams = np.concatenate([lams, np.linspace(0.0, 1.0, 37, dtype=np.float32)])
    cy, cx, lam = np.meshgrid(np.arange(size), np.arange(size), lams, indexing="ij")
    cy, cx, lam = cy.ravel(), cx.ravel(), lam.ravel()
    ours = np.stack(jax.jit(mixing.box_at, static_argnums=(3, 4))(cy, cx, lam, size, size), -1)
    reference = [numpy_rand_bbox(*args, size) for args in zip(cy, cx, lam, strict=True)]
    np.testing.assert_array_equal(ours, np.array(reference))
    assert ((ours[:, 1] - ours[:, 0]) % 2 == 1).any()  # odd sides are pasted whole


def test_cutmix_mean_pasted_area_is_timms():
    """Beta(1, 1) at 32 px: timm 1.0's box law pastes 0.310 of the image on average (the
    always-even sides of older ports paste 0.299)."""
    size, n = 32, 100_000
    images, targets = jnp.zeros((2, size, size, 1)), jnp.zeros((2, 10))
    keys = jax.random.split(jax.random.key(2), n)
    ours = np.asarray(jax.vmap(lambda k: mix(k, images, targets, CUTMIX)[2]["lam"])(keys))
    rng = np.random.default_rng(0)
    reference = np.array([numpy_cutmix_lam(rng, 1.0, size) for _ in range(n)])
    assert 1 - reference.mean() == pytest.approx(0.310, abs=0.002)
    assert 1 - ours.mean() == pytest.approx(1 - reference.mean(), abs=0.003)


def test_mixup_blends_with_partner():
    images = distinct_images()
    targets = smooth_labels(jnp.arange(8), 10, 0.0)
    out, t, info = mix(jax.random.key(3), images, targets, MIXUP)
    lam = float(info["lam"])
    assert 0.0 < lam < 1.0 and float(info["cutmix"]) == 0.0
    np.testing.assert_allclose(out, lam * images + (1 - lam) * images[::-1], rtol=1e-5)
    np.testing.assert_allclose(t, lam * targets + (1 - lam) * targets[::-1], rtol=1e-5)


def test_switch_prob_chooses_cutmix():
    images, targets = distinct_images(4, 8), smooth_labels(jnp.arange(4), 10, 0.0)
    spec = mixing.MixSpec(cutmix_alpha=1.0, mixup_alpha=1.0, prob=1.0, switch_prob=0.25)
    keys = jax.random.split(jax.random.key(0), 4000)
    used = jax.vmap(lambda k: mix(k, images, targets, spec)[2]["cutmix"])(keys)
    assert float(used.mean()) == pytest.approx(0.25, abs=0.03)


def test_jit_equals_eager():
    images = distinct_images()
    targets = smooth_labels(jnp.arange(8), 10, 0.1)
    for spec in (CUTMIX, MIXUP):
        eager = mixing.mix_batch(jax.random.key(5), images, targets, spec, 1)
        jitted = mix(jax.random.key(5), images, targets, spec)
        for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_eight_devices_pair_within_each_shard():
    """Sharded over 8 devices, each shard is mixed as one device would mix it alone."""
    mesh = sharding.make_mesh(8)
    images = distinct_images(32, 8)
    targets = smooth_labels(jnp.arange(32) % 10, 10, 0.1)
    spec = mixing.MixSpec(cutmix_alpha=1.0, mixup_alpha=1.0, prob=1.0)
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
    for seed in range(4):
        key = jax.random.key(seed)
        out8, t8, _ = mix(
            key,
            jax.device_put(images, batch_sharding),
            jax.device_put(targets, batch_sharding),
            spec,
            num_shards=8,
        )
        assert out8.sharding.spec[0] == "data"
        per_shard = [mix(key, images[i : i + 4], targets[i : i + 4], spec) for i in range(0, 32, 4)]
        np.testing.assert_allclose(out8, np.concatenate([p[0] for p in per_shard]), rtol=1e-6)
        np.testing.assert_allclose(t8, np.concatenate([p[1] for p in per_shard]), rtol=1e-6)
        # Partners never cross a shard: shard i only holds values of its own images.
        for i in range(8):
            shard_values = np.unique(np.floor(np.asarray(out8[4 * i : 4 * i + 4])))
            assert set(shard_values) <= set(range(4 * i + 1, 4 * i + 5))
