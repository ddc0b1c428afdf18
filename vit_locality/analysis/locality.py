"""Per-head attention-locality metrics (MAD, entropy, prefix and self mass).

The definitions are docs/locality.md's. For a model with P prefix tokens
and a row-major ``gh x gw`` grid of N = gh * gw patch tokens (token ``P + r * gw + c`` is grid cell
``(r, c)``), ``Ap = A[..., P:, P:]`` is the patch-to-patch block of the post-softmax attention and
``At = Ap / Ap.sum(-1)`` its per-query renormalisation. Every metric is a mean over images and query
patches with equal weights, per layer and head.

The computation is split so that a jitted model-level pass can reduce on the device and accumulate
exactly across batches of any size:

- ``locality_sums`` reduces attention ``[..., B, H, T, T]`` to per-head sums ``[..., H]`` over
  (images, query patches), plus the count of (image, query patch) pairs that went into them;
- ``finalize`` divides accumulated sums by the accumulated count;
- ``locality_metrics`` is both at once, for one batch ``[L, B, H, T, T]``.

Degenerate rows: when a query's patch mass ``Ap.sum(-1)`` is 0 (all its attention is on prefix
tokens, or underflowed below float32's smallest normal number, ~1.2e-38), ``At`` is undefined; such
a row is given uniform ``At = 1 / N``. It then contributes the uniform-attention values to ``mad``,
``mad_px``, ``entropy`` (1) and ``self_mass`` (1 / N), so an all-prefix head never looks local. The
metrics that do not renormalise (``mad_unnorm_px``, ``entropy_full``, ``prefix_mass``) use the
attention as it is. Exact zeros and ones never produce NaN (``entr(0) = 0``).
"""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import entr

DEFINITIONS: dict[str, str] = {
    "mad_px": "mean over images and query patches i of sum_j At[i,j] * d(i,j) * patch_size, in "
    "pixels; At = patch-to-patch attention renormalised per query row, d = Euclidean grid distance "
    "in patches",
    "mad": "mad_px / (gw * patch_size): mean attention distance as a fraction of the image width "
    "(the primary MAD)",
    "mad_unnorm_px": "mean over images and query patches i of sum_j Ap[i,j] * d(i,j) * patch_size, "
    "in pixels, without renormalisation (the probing-vits convention)",
    "entropy": "mean over images and query patches of -sum_j At log At / log N over the N patch "
    "keys: 1 for uniform attention over patches, 0 for one-hot",
    "entropy_full": "mean over images and query patches of -sum_k A log A / log(N + P) over all "
    "N + P keys, prefix tokens included",
    "prefix_mass": "mean over images and query patches of the attention on the P prefix (CLS) "
    "tokens; 0 when P = 0",
    "self_mass": "mean over images and query patches i of At[i,i], the renormalised attention of a "
    "patch on itself",
}


def patch_distances(grid: tuple[int, int]) -> np.ndarray:
    """Euclidean distances between the cells of a row-major ``gh x gw`` patch grid.

    Args:
      grid: ``(gh, gw)``.

    Returns:
      float32 ``[N, N]``, N = gh * gw: entry ``(i, j)`` is the distance, in patches, between
      patch i at cell ``(i // gw, i % gw)`` and patch j.
    """
    rows, cols = np.divmod(np.arange(grid[0] * grid[1]), grid[1])
    coords = np.stack([rows, cols], axis=-1).astype(np.float64)
    diff = coords[:, None, :] - coords[None, :, :]
    return np.sqrt((diff**2).sum(-1)).astype(np.float32)


def uniform_mad(grid: tuple[int, int]) -> float:
    """The MAD, as a fraction of the image width, of uniform attention over a `gh x gw` grid
    (0.517 for 8 x 8): the reference line of the figures."""
    return float(patch_distances(tuple(grid)).mean() / grid[1])


def locality_sums(
    attn: jax.Array,
    *,
    grid: tuple[int, int],
    num_prefix_tokens: int,
    patch_size: int,
    mask: jax.Array | None = None,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """Per-head sums of every locality metric over images and query patches.

    Sums and counts from several batches add up, so ``finalize(sum of sums, sum of counts)`` is the
    mean over all the images with equal weights whatever the batch sizes (up to float32 rounding):
    accumulate with ``jax.tree.map(jnp.add, acc, locality_sums(...))``. jit-compatible with
    ``grid``, ``num_prefix_tokens`` and ``patch_size`` static.

    Args:
      attn: post-softmax attention ``[..., B, H, T, T]`` (e.g. one layer ``[B, H, T, T]`` or a stack
        ``[L, B, H, T, T]``), ``T = num_prefix_tokens + gh * gw``, queries on axis -2 and keys on
        axis -1. Any float dtype; computed in float32.
      grid: ``(gh, gw)``, the patch grid in patches; row-major token order.
      num_prefix_tokens: P, the tokens before the patches (1 with a CLS token, 0 with GAP).
      patch_size: patch side in pixels, the unit of ``mad_px`` and ``mad_unnorm_px``.
      mask: optional ``[B]`` bool, False for padding images, which then contribute nothing.

    Returns:
      ``(sums, count)``: ``sums`` maps each name of ``DEFINITIONS`` to a float32 ``[..., H]`` sum
      over (images, query patches); ``count`` is an int32 scalar, the number of (image, query patch)
      pairs summed: ``B * N``, or ``mask.sum() * N`` with a mask.

    Raises:
      ValueError: on a grid of fewer than 2 patches or when ``T`` does not match the grid.
    """
    gh, gw = grid
    n = gh * gw
    p = num_prefix_tokens
    if n < 2:
        raise ValueError(f"grid {grid} has {n} patch(es); locality needs at least 2")
    if attn.ndim < 4 or attn.shape[-1] != p + n or attn.shape[-2] != p + n:
        raise ValueError(
            f"attention of shape {attn.shape} is not [..., B, H, T, T] with "
            f"T = num_prefix_tokens + gh * gw = {p} + {n}"
        )

    a = attn.astype(jnp.float32)
    queries = a[..., p:, :]  # [..., B, H, N, T]: patch queries over all keys
    ap = queries[..., p:]  # [..., B, H, N, N]
    row_mass = ap.sum(-1, keepdims=True)
    defined = row_mass >= jnp.finfo(jnp.float32).tiny
    at = jnp.where(defined, ap / jnp.where(defined, row_mass, 1.0), 1.0 / n)

    dist_px = jnp.asarray(patch_distances(grid) * patch_size)

    def expected_distance(w: jax.Array) -> jax.Array:
        # HIGHEST keeps the contraction in full float32 where the default would use bf16/TF32.
        return jnp.einsum("...ij,ij->...i", w, dist_px, precision=jax.lax.Precision.HIGHEST)

    mad_px = expected_distance(at)
    per_query = {  # each [..., B, H, N]
        "mad_px": mad_px,
        "mad": mad_px / (gw * patch_size),
        "mad_unnorm_px": expected_distance(ap),
        "entropy": entr(at).sum(-1) / float(np.log(n)),
        "entropy_full": entr(queries).sum(-1) / float(np.log(n + p)),
        "prefix_mass": queries[..., :p].sum(-1),
        "self_mass": jnp.diagonal(at, axis1=-2, axis2=-1),
    }

    if mask is None:
        count = jnp.asarray(attn.shape[-4] * n, jnp.int32)
    else:
        mask = jnp.asarray(mask).astype(bool)
        count = jnp.count_nonzero(mask).astype(jnp.int32) * n
        per_query = {k: jnp.where(mask[:, None, None], v, 0.0) for k, v in per_query.items()}
    sums = {k: v.sum(axis=(-3, -1)) for k, v in per_query.items()}
    return sums, count


def finalize(sums: Mapping[str, jax.Array], count: jax.Array | int) -> dict[str, jax.Array]:
    """Means from (accumulated) ``locality_sums`` output.

    Args:
      sums: name -> float32 ``[..., H]`` sums over (images, query patches).
      count: the (accumulated) number of (image, query patch) pairs; must be positive.

    Returns:
      name -> float32 ``[..., H]`` means, in the units of ``DEFINITIONS``.
    """
    return {k: (v / count).astype(jnp.float32) for k, v in sums.items()}


def locality_metrics(
    attn: jax.Array, *, grid: tuple[int, int], num_prefix_tokens: int, patch_size: int
) -> dict[str, jax.Array]:
    """Every per-head locality metric of one batch of attention maps.

    Args:
      attn: post-softmax attention ``[L, B, H, T, T]``, ``T = num_prefix_tokens + gh * gw``.
      grid: ``(gh, gw)``, row-major patch grid.
      num_prefix_tokens: P (1 with a CLS token, 0 with GAP).
      patch_size: patch side in pixels.

    Returns:
      name -> float32 ``[L, H]``, the mean over images and query patches; names and units as in
      ``DEFINITIONS``. jit-compatible with ``grid``, ``num_prefix_tokens`` and ``patch_size``
      static.
    """
    sums, count = locality_sums(
        attn, grid=grid, num_prefix_tokens=num_prefix_tokens, patch_size=patch_size
    )
    return finalize(sums, count)


def summarize(per_head: Mapping[str, Any]) -> dict[str, Any]:
    """Per-layer and headline summaries of per-head metrics, as JSON-ready Python values.

    Args:
      per_head: name -> ``[L, H]`` array-like; needs ``mad`` and ``entropy``.

    Returns:
      ``{mad,entropy}_{min,mean,max}``: lists of L floats, the min/mean/max over heads per layer;
      ``min_mad_first_layer``: min over heads of ``mad[0]``; ``min_mad_early``: min of ``mad`` over
      the heads of the first third of the layers (``layers[:max(1, L // 3)]``).
    """
    summary: dict[str, Any] = {}
    for name in ("mad", "entropy"):
        values = np.asarray(per_head[name], dtype=np.float64)
        for stat in ("min", "mean", "max"):
            summary[f"{name}_{stat}"] = getattr(values, stat)(axis=1).tolist()
    mad = np.asarray(per_head["mad"], dtype=np.float64)
    summary["min_mad_first_layer"] = float(mad[0].min())
    summary["min_mad_early"] = float(mad[: max(1, mad.shape[0] // 3)].min())
    return summary
