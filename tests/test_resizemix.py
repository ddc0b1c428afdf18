"""ResizeMix on the device against a NumPy reference written from its authors' code
(github.com/JayQine/ResizeMix: `run_apis/trainer.py`'s resizemix branch, `tools/utils.py`
`getbox_new`) and from ATen's nearest `F.interpolate(x, scale_factor=rate)`
(`UpSample.h`: `compute_output_size`, `nearest_idx`), on real CIFAR-10 images; it shares no code
with `vit_locality.augment.resizemix`."""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from vit_locality.augment import resizemix as rm
from vit_locality.data import files
from vit_locality.parallel import sharding

from .conftest import CIFAR10_SAMPLE

ON = rm.ResizeMixSpec(prob=1.0)
# Half a float32 ulp below 1, and the double's own rounding of the authors' lam.
HALF_ULP = 2**-25 + 2**-53


def torch_nearest_downscale(x: np.ndarray, rate: float) -> np.ndarray:
    """`F.interpolate(x, scale_factor=rate)` (mode "nearest") on NCHW: output side
    `int64(side * rate)` in double; source index `min(floorf(dst * float(1.0 / rate)), side - 1)`
    in float32."""
    _, _, height, width = x.shape

    def sources(side: int) -> np.ndarray:
        out = int(side * rate)
        scale = np.float32(1.0 / rate)
        return np.array(
            [min(int(np.floor(np.float32(i) * scale)), side - 1) for i in range(out)], np.int64
        )

    return x[:, :, sources(height)][:, :, :, sources(width)]


def authors_resizemix(
    x: np.ndarray, rand_index: np.ndarray, rate: float, cx: np.ndarray, cy: np.ndarray
) -> tuple[np.ndarray, float]:
    """The authors' resizemix branch on an NCHW batch with its draws given: `rate` (their
    `random.uniform(0.1, 0.8)`), `cx`, `cy` (their `np.random.randint(0, W|H, N)` in
    `getbox_new`, where `W = size[2]` is the row axis), `rand_index` (their `randperm`)."""
    x = x.copy()
    data_small = torch_nearest_downscale(x, rate)
    size, dxy = x.shape, data_small.shape[2:]
    W, H = size[2], size[3]  # noqa: N806 (their names)
    bbx1 = np.clip(cx - dxy[0] // 2, 0, W)
    bbx2 = np.clip(bbx1 + dxy[0], 0, W)
    bbx1 = np.clip(bbx2 - dxy[0], 0, W)
    bby1 = np.clip(cy - dxy[1] // 2, 0, H)
    bby2 = np.clip(bby1 + dxy[1], 0, H)
    bby1 = np.clip(bby2 - dxy[1], 0, H)
    m1, n1, m2, n2 = bbx1, bby1, bbx2, bby2
    for i in range(x.shape[0]):
        x[i, :, m1[i] : m2[i], n1[i] : n2[i]] = data_small[rand_index[i]]
    lam = 1 - (data_small.shape[-1] * data_small.shape[-2]) / (x.shape[-1] * x.shape[-2])
    return x, lam


def reversed_within(batch: int, shards: int) -> np.ndarray:
    return np.arange(batch).reshape(shards, -1)[:, ::-1].reshape(-1)


@pytest.fixture(scope="module")
def cifar():
    if not (CIFAR10_SAMPLE / "test_batch.bin").exists():
        pytest.skip("real CIFAR-10 sample absent")
    images, labels = files.read_cifar10(CIFAR10_SAMPLE, "test")[:2]
    return images[:8].astype(np.float32) / 255.0, np.asarray(labels[:8])


@partial(jax.jit, static_argnames=("spec", "num_shards"))
def mix(rng, images, targets, spec, num_shards):
    return rm.resizemix_batch(rng, images, targets, spec, num_shards)


@pytest.mark.parametrize("num_shards", [1, 2])
@pytest.mark.parametrize("seed", range(4))
def test_batch_equals_the_authors_code_on_real_images(cifar, seed, num_shards):
    images, labels = cifar
    targets = np.eye(10, dtype=np.float32)[labels] * 0.9 + 0.01  # smoothed, eps = 0.1
    rng = jax.random.key(seed)
    got_images, got_targets, info = mix(rng, images, targets, ON, num_shards)
    draws = rm.sample_draws(rng, 8, 32, 32, ON)
    partner = reversed_within(8, num_shards)
    rate = float(draws.rate)
    expected, lam = authors_resizemix(
        images.transpose(0, 3, 1, 2), partner, rate, np.asarray(draws.cy), np.asarray(draws.cx)
    )
    np.testing.assert_array_equal(np.asarray(got_images), expected.transpose(0, 2, 3, 1))
    # lam: the authors' double, ours one float32 rounding (half an ulp below 1, 2^-25).
    assert abs(float(info["lam"]) - lam) <= HALF_ULP and info["mixed"] == 1.0
    # Targets: two float32 products of terms <= 1 and a sum, each rounded.
    expected_targets = lam * targets + (1 - lam) * targets[partner]
    np.testing.assert_allclose(np.asarray(got_targets), expected_targets, rtol=0, atol=3 * 2**-24)


@pytest.mark.parametrize("size", [32, 28, 64])
def test_nearest_shrink_and_box_at_every_rate(size):
    """Over rates spanning [0.1, 0.8) (every small size from 2 or 3 to 25 or 51) and centres at
    the corners, edges and middle, on a non-power-of-two size too (Fashion-MNIST's 28)."""
    rng = np.random.default_rng(size)
    images = rng.integers(0, 256, (6, size, size, 3)).astype(np.uint8)
    partner = images[::-1]
    centres = np.array([0, size - 1, size // 2, 1, size - 2, 7])
    paste = jax.jit(rm.paste_resized)
    for rate in np.linspace(0.1, 0.8, 71, endpoint=False).astype(np.float32):
        got, lam = paste(images, partner, rate, centres, centres[::-1].copy())
        expected, expected_lam = authors_resizemix(
            images.transpose(0, 3, 1, 2), np.arange(6)[::-1], float(rate), centres, centres[::-1]
        )
        np.testing.assert_array_equal(np.asarray(got), expected.transpose(0, 2, 3, 1))
        assert abs(float(lam) - expected_lam) <= HALF_ULP


def test_pasted_box_is_the_shard_partners_and_sets_lam():
    """With image b filled with b, every pasted pixel is its shard's reversed partner's, the box
    is `floor(32 * rate)` square for every image, and lam is 1 - its area / 1024."""
    batch = 8
    images = jnp.broadcast_to(
        jnp.arange(batch, dtype=jnp.float32)[:, None, None, None], (8, 32, 32, 3)
    )
    targets = jax.nn.one_hot(jnp.arange(batch), batch)
    for seed in range(5):
        out, mixed_targets, info = mix(jax.random.key(seed), images, targets, ON, 2)
        out = np.asarray(out)[..., 0]
        draws = rm.sample_draws(jax.random.key(seed), batch, 32, 32, ON)
        side = math.floor(32 * float(draws.rate))
        partner = reversed_within(batch, 2)
        for b in range(batch):
            pasted = out[b] != b
            assert pasted.sum() == side * side and np.all(out[b][pasted] == partner[b])
            rows, cols = np.nonzero(pasted)
            assert rows.max() - rows.min() + 1 == side == cols.max() - cols.min() + 1
        lam = 1 - side * side / 1024
        assert float(info["lam"]) == pytest.approx(lam, abs=2**-24)
        np.testing.assert_allclose(np.asarray(mixed_targets).sum(1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(
            np.asarray(mixed_targets)[np.arange(batch), partner], 1 - lam, atol=1e-6
        )


def test_eight_devices_equal_one_and_pair_within_each_shard(cifar):
    """Sharded over 8 devices, the batch mixes as on one device with the same shards: the same
    pixels and targets, kept sharded, partners never crossing a shard."""
    images, labels = cifar
    images = np.concatenate([images] * 4)  # 32 images, 4 per device
    targets = np.eye(10, dtype=np.float32)[np.concatenate([labels] * 4)]
    batch_sharding = NamedSharding(sharding.make_mesh(8), PartitionSpec("data"))
    for seed in range(3):
        key = jax.random.key(seed)
        out8, t8, info8 = mix(
            key,
            jax.device_put(images, batch_sharding),
            jax.device_put(targets, batch_sharding),
            ON,
            8,
        )
        assert out8.sharding.spec[0] == "data"
        out1, t1, info1 = mix(key, images, targets, ON, 8)
        np.testing.assert_array_equal(np.asarray(out8), np.asarray(out1))
        np.testing.assert_array_equal(np.asarray(t8), np.asarray(t1))
        assert float(info8["lam"]) == float(info1["lam"])
        draws = rm.sample_draws(key, 32, 32, 32, ON)
        expected, _ = authors_resizemix(
            images.transpose(0, 3, 1, 2),
            reversed_within(32, 8),
            float(draws.rate),
            np.asarray(draws.cy),
            np.asarray(draws.cx),
        )
        np.testing.assert_array_equal(np.asarray(out8), expected.transpose(0, 2, 3, 1))


def test_draws_are_the_authors_distributions():
    """rate ~ U(0.1, 0.8), centres uniform over the 32 rows and the 32 columns, the batch coin
    with probability prob: 4,000 batches, 5 sigmas."""
    draws = 4000
    spec = rm.ResizeMixSpec(prob=0.3)
    sample = jax.jit(jax.vmap(lambda key: rm.sample_draws(key, 8, 32, 32, spec)))
    out = sample(jax.random.split(jax.random.key(0), draws))
    rate = np.asarray(out.rate, np.float64)
    assert rate.min() >= 0.1 and rate.max() < 0.8
    assert abs(rate.mean() - 0.45) < 5 * 0.7 / math.sqrt(12 * draws)
    # Uniform: each tenth of the range holds a tenth of the draws.
    counts = np.bincount(np.minimum(((rate - 0.1) / 0.07).astype(int), 9), minlength=10)
    assert np.all(np.abs(counts - draws / 10) < 5 * math.sqrt(draws * 0.09)), counts
    for centres in (np.asarray(out.cy), np.asarray(out.cx)):
        counts = np.bincount(centres.reshape(-1), minlength=32)
        n = centres.size
        assert counts.size == 32
        assert np.all(np.abs(counts - n / 32) < 5 * math.sqrt(n / 32 * 31 / 32)), counts
    assert abs(np.asarray(out.apply).mean() - 0.3) < 5 * math.sqrt(0.21 / draws)


def test_off_and_unapplied_batches_pass_unchanged(cifar):
    images, labels = cifar
    targets = np.eye(10, dtype=np.float32)[labels]
    off = mix(jax.random.key(0), images, targets, rm.ResizeMixSpec(), 1)
    np.testing.assert_array_equal(np.asarray(off[0]), images)
    assert float(off[2]["lam"]) == 1.0 and float(off[2]["mixed"]) == 0.0
    half = rm.ResizeMixSpec(prob=0.5)
    seen = set()
    for seed in range(12):
        out, out_targets, info = mix(jax.random.key(seed), images, targets, half, 1)
        seen.add(float(info["mixed"]))
        if info["mixed"] == 0.0:
            np.testing.assert_array_equal(np.asarray(out), images)
            np.testing.assert_array_equal(np.asarray(out_targets), targets)
            assert float(info["lam"]) == 1.0
    assert seen == {0.0, 1.0}


def test_spec_checks():
    with pytest.raises(ValueError):
        rm.ResizeMixSpec(prob=1.5)
    with pytest.raises(ValueError):
        rm.ResizeMixSpec(prob=1.0, scale_min=0.0)
    with pytest.raises(ValueError):
        rm.ResizeMixSpec(prob=1.0, scale_min=0.5, scale_max=1.0)
