"""Locality metrics against exact sanity cases and a slow reference written from
docs/locality.md."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vit_locality.analysis.locality import (
    DEFINITIONS,
    finalize,
    locality_metrics,
    locality_sums,
    summarize,
)

NAMES = sorted(DEFINITIONS)
STATIC = ("grid", "num_prefix_tokens", "patch_size")
# Jitted once per shape: far faster on the CPU than eager op-by-op dispatch.
jit_metrics = jax.jit(locality_metrics, static_argnames=STATIC)
jit_sums = jax.jit(locality_sums, static_argnames=STATIC)
# Mean Euclidean distance, in patches, between two cells drawn uniformly from an 8x8 grid
# (docs/locality.md's sanity value "4.136 patches").
UNIFORM_8X8_PATCHES = 4.1365


def targeted_attention(grid, num_prefix_tokens, target_of, shape=(2, 3, 2)):
    """One-hot attention ``[L, B, H, T, T]``: patch query i puts all its mass on token
    ``target_of(r, c)`` (a token index), prefix queries attend to token 0."""
    gh, gw = grid
    t = num_prefix_tokens + gh * gw
    attn = np.zeros((*shape, t, t), np.float32)
    attn[..., :num_prefix_tokens, 0] = 1.0
    for r in range(gh):
        for c in range(gw):
            attn[..., num_prefix_tokens + r * gw + c, target_of(r, c)] = 1.0
    return attn


def dirichlet_attention(rng, shape, t, alpha=0.3):
    """Random attention ``[*shape, T, T]`` whose rows are Dirichlet draws, in float32."""
    return rng.dirichlet(np.full(t, alpha), size=(*shape, t)).astype(np.float32)


def reference_metrics(attn, grid, num_prefix_tokens, patch_size):
    """docs/locality.md's table, entry by entry, in float64 loops."""
    gh, gw = grid
    n, p = gh * gw, num_prefix_tokens
    num_layers, batch, heads = attn.shape[:3]
    a = attn.astype(np.float64)
    out = {name: np.zeros((num_layers, heads)) for name in NAMES}
    for layer in range(num_layers):
        for h in range(heads):
            acc = dict.fromkeys(NAMES, 0.0)
            for b in range(batch):
                for i in range(n):
                    row = a[layer, b, h, p + i]
                    patch = row[p:]
                    renorm = patch / patch.sum()
                    ri, ci = divmod(i, gw)
                    for j in range(n):
                        rj, cj = divmod(j, gw)
                        dist = math.hypot(ri - rj, ci - cj)
                        acc["mad_px"] += renorm[j] * dist * patch_size
                        acc["mad_unnorm_px"] += patch[j] * dist * patch_size
                        if renorm[j] > 0:
                            acc["entropy"] -= renorm[j] * math.log(renorm[j]) / math.log(n)
                    for k in range(n + p):
                        if row[k] > 0:
                            acc["entropy_full"] -= row[k] * math.log(row[k]) / math.log(n + p)
                    acc["prefix_mass"] += row[:p].sum()
                    acc["self_mass"] += renorm[i]
            acc["mad"] = acc["mad_px"] / (gw * patch_size)
            for name in NAMES:
                out[name][layer, h] = acc[name] / (batch * n)
    return out


def metrics(attn, grid, num_prefix_tokens, patch_size=4):
    out = jit_metrics(
        jnp.asarray(attn), grid=grid, num_prefix_tokens=num_prefix_tokens, patch_size=patch_size
    )
    return {k: np.asarray(v) for k, v in out.items()}


def test_names_shapes_and_dtype():
    attn = dirichlet_attention(np.random.default_rng(0), (3, 2, 5), 1 + 9)
    out = jit_metrics(
        jnp.asarray(attn, jnp.bfloat16), grid=(3, 3), num_prefix_tokens=1, patch_size=4
    )
    assert sorted(out) == NAMES
    for value in out.values():
        assert value.shape == (3, 5)
        assert value.dtype == jnp.float32


def test_attention_on_self_is_local():
    grid = (8, 8)
    out = metrics(targeted_attention(grid, 1, lambda r, c: 1 + r * 8 + c), grid, 1)
    for name in ("mad", "mad_px", "mad_unnorm_px", "entropy", "entropy_full", "prefix_mass"):
        np.testing.assert_array_equal(out[name], 0.0, err_msg=name)
    np.testing.assert_array_equal(out["self_mass"], 1.0)


@pytest.mark.parametrize("num_prefix_tokens", [0, 1])
def test_uniform_attention_on_8x8(num_prefix_tokens):
    """Uniform over all T keys: renormalised over patches it is uniform, whatever P."""
    n, p, patch_size = 64, num_prefix_tokens, 4
    attn = np.full((2, 3, 2, n + p, n + p), 1.0 / (n + p), np.float32)
    out = metrics(attn, (8, 8), p, patch_size)
    np.testing.assert_allclose(out["mad_px"] / patch_size, UNIFORM_8X8_PATCHES, atol=5e-5)
    np.testing.assert_allclose(out["mad"], 0.517, atol=5e-4)
    np.testing.assert_allclose(out["mad"], out["mad_px"] / (8 * patch_size), rtol=1e-6)
    np.testing.assert_allclose(out["mad_unnorm_px"], out["mad_px"] * n / (n + p), rtol=1e-6)
    np.testing.assert_allclose(out["entropy"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(out["entropy_full"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(out["prefix_mass"], p / (n + p), rtol=1e-5)
    np.testing.assert_allclose(out["self_mass"], 1.0 / n, rtol=1e-6)


@pytest.mark.parametrize("grid", [(8, 8), (4, 6)])
@pytest.mark.parametrize("offset", [(0, 1), (1, 0), (1, 1)])
def test_attention_on_a_neighbour(grid, offset):
    """Each patch attends to the neighbour at ``offset`` (right, below, diagonal), mirrored at the
    last row/column so that every query sits exactly ``hypot(offset)`` patches from its key."""
    gh, gw = grid
    dr, dc = offset

    def neighbour(r, c):
        r2 = r + dr if r + dr < gh else r - dr
        c2 = c + dc if c + dc < gw else c - dc
        return 1 + r2 * gw + c2

    patch_size = 4
    out = metrics(targeted_attention(grid, 1, neighbour), grid, 1, patch_size)
    dist = math.hypot(dr, dc)
    np.testing.assert_allclose(out["mad_px"], dist * patch_size, rtol=1e-6)
    np.testing.assert_allclose(out["mad_unnorm_px"], dist * patch_size, rtol=1e-6)
    np.testing.assert_allclose(out["mad"], dist / gw, rtol=1e-6)
    for name in ("entropy", "entropy_full", "prefix_mass", "self_mass"):
        np.testing.assert_array_equal(out[name], 0.0, err_msg=name)


@pytest.mark.parametrize(
    ("grid", "num_prefix_tokens"), [((3, 3), 1), ((4, 6), 1), ((4, 6), 0), ((2, 5), 2)]
)
def test_matches_reference_on_random_attention(grid, num_prefix_tokens):
    t = num_prefix_tokens + grid[0] * grid[1]
    attn = dirichlet_attention(np.random.default_rng(1), (2, 3, 2), t)
    out = metrics(attn, grid, num_prefix_tokens, patch_size=4)
    expected = reference_metrics(attn, grid, num_prefix_tokens, patch_size=4)
    for name in NAMES:
        np.testing.assert_allclose(out[name], expected[name], rtol=1e-5, atol=1e-7, err_msg=name)


def test_gap_model_without_prefix_token():
    attn = dirichlet_attention(np.random.default_rng(2), (2, 3, 2), 16)
    out = metrics(attn, (4, 4), 0)
    np.testing.assert_array_equal(out["prefix_mass"], 0.0)
    np.testing.assert_allclose(out["entropy_full"], out["entropy"], rtol=1e-5)
    np.testing.assert_allclose(out["mad_unnorm_px"], out["mad_px"], rtol=1e-5)


def test_all_attention_on_prefix_is_uniform_not_local():
    """Rows with no patch mass are renormalised as uniform: no NaN and no fake locality."""
    grid, n = (8, 8), 64
    attn = targeted_attention(grid, 1, lambda r, c: 0)
    out = metrics(attn, grid, 1)
    for name, value in out.items():
        assert np.isfinite(value).all(), name
    np.testing.assert_allclose(out["mad_px"] / 4, UNIFORM_8X8_PATCHES, atol=5e-5)
    np.testing.assert_allclose(out["entropy"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(out["self_mass"], 1.0 / n, rtol=1e-6)
    np.testing.assert_array_equal(out["mad_unnorm_px"], 0.0)
    np.testing.assert_array_equal(out["entropy_full"], 0.0)
    np.testing.assert_array_equal(out["prefix_mass"], 1.0)


def test_mixed_zero_and_one_rows_are_finite_and_exact():
    """Half the patch queries attend to CLS only, half to themselves."""
    grid, n = (4, 4), 16
    attn = targeted_attention(grid, 1, lambda r, c: 0 if r < 2 else 1 + r * 4 + c)
    out = metrics(attn, grid, 1)
    for name, value in out.items():
        assert np.isfinite(value).all(), name
    np.testing.assert_allclose(out["entropy"], 0.5, rtol=1e-6)
    np.testing.assert_allclose(out["self_mass"], 0.5 + 0.5 / n, rtol=1e-6)
    np.testing.assert_allclose(out["prefix_mass"], 0.5, rtol=1e-6)


def test_sums_accumulate_exactly_over_batches_of_different_sizes():
    grid, p = (3, 4), 1
    attn = dirichlet_attention(np.random.default_rng(3), (2, 7, 3), p + 12)
    kwargs = dict(grid=grid, num_prefix_tokens=p, patch_size=4)
    acc = None
    for part in (attn[:, :2], attn[:, 2:7]):
        step = jit_sums(jnp.asarray(part), **kwargs)
        acc = step if acc is None else jax.tree.map(jnp.add, acc, step)
    assert int(acc[1]) == 7 * 12
    accumulated = finalize(*acc)
    whole = jit_metrics(jnp.asarray(attn), **kwargs)
    for name in NAMES:
        np.testing.assert_allclose(accumulated[name], whole[name], rtol=1e-6, err_msg=name)


def test_sums_of_one_layer_match_the_stack():
    grid, p = (3, 3), 1
    attn = jnp.asarray(dirichlet_attention(np.random.default_rng(4), (2, 3, 2), p + 9))
    kwargs = dict(grid=grid, num_prefix_tokens=p, patch_size=4)
    stack_sums, stack_count = jit_sums(attn, **kwargs)
    layer_sums, layer_count = jit_sums(attn[1], **kwargs)
    assert int(layer_count) == int(stack_count) == 3 * 9
    for name in NAMES:
        assert layer_sums[name].shape == (2,)
        np.testing.assert_allclose(layer_sums[name], stack_sums[name][1], rtol=1e-6)


def test_mask_drops_padding_images():
    grid, p = (3, 3), 1
    rng = np.random.default_rng(5)
    real = dirichlet_attention(rng, (2, 3, 2), p + 9)
    padded = np.concatenate([real, np.full((2, 2, 2, p + 9, p + 9), np.nan, np.float32)], axis=1)
    kwargs = dict(grid=grid, num_prefix_tokens=p, patch_size=4)
    mask = jnp.asarray([True, True, True, False, False])
    sums, count = jit_sums(jnp.asarray(padded), mask=mask, **kwargs)
    assert int(count) == 3 * 9
    masked = finalize(sums, count)
    expected = jit_metrics(jnp.asarray(real), **kwargs)
    for name in NAMES:
        np.testing.assert_allclose(masked[name], expected[name], rtol=1e-6, err_msg=name)


def test_jit_matches_eager():
    attn = jnp.asarray(dirichlet_attention(np.random.default_rng(6), (2, 3, 2), 1 + 24))
    kwargs = dict(grid=(4, 6), num_prefix_tokens=1, patch_size=4)
    jitted = jit_metrics(attn, **kwargs)
    eager = locality_metrics(attn, **kwargs)
    for name in NAMES:
        np.testing.assert_allclose(jitted[name], eager[name], rtol=1e-6, err_msg=name)


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="T = num_prefix_tokens"):
        locality_metrics(jnp.zeros((1, 1, 1, 9, 9)), grid=(3, 3), num_prefix_tokens=1, patch_size=4)
    with pytest.raises(ValueError, match="at least 2"):
        locality_metrics(jnp.ones((1, 1, 1, 1, 1)), grid=(1, 1), num_prefix_tokens=0, patch_size=4)


@pytest.mark.parametrize(("num_layers", "early"), [(1, 1), (2, 1), (4, 1), (6, 2), (9, 3)])
def test_summarize(num_layers, early):
    rng = np.random.default_rng(7)
    mad = rng.uniform(0.1, 1.0, (num_layers, 3)).astype(np.float32)
    entropy = rng.uniform(0.0, 1.0, (num_layers, 3)).astype(np.float32)
    summary = summarize({"mad": jnp.asarray(mad), "entropy": entropy, "self_mass": mad})
    assert json.loads(json.dumps(summary)) == summary
    for name, values in (("mad", mad), ("entropy", entropy)):
        for stat in ("min", "mean", "max"):
            got = summary[f"{name}_{stat}"]
            assert isinstance(got, list) and len(got) == num_layers
            assert all(isinstance(v, float) for v in got)
            np.testing.assert_allclose(got, getattr(values, stat)(axis=1), rtol=1e-6)
    assert isinstance(summary["min_mad_first_layer"], float)
    assert summary["min_mad_first_layer"] == pytest.approx(mad[0].min())
    assert summary["min_mad_early"] == pytest.approx(mad[:early].min())
