"""The jitted model-level locality pass: attention reduced on the device, layer by layer.

`make_locality_pass` builds `f(params, images, mask) -> (sums, count)`: the ViT runs in eval mode
on uint8 images (normalized inside), and every layer's post-softmax attention goes through
`locality.locality_sums` as soon as the layer has computed it (the model's `reduce_attention`
hook), one head at a time (`lax.scan` over heads). Only the per-[layer, head] sums leave the
device; the peak memory is that of about one layer's attention maps for the batch (measured with
XLA's memory analysis in tests/test_analysis_pass.py and benchmarks/analysis.py), whatever the
depth.

With `rollout="mean" | "max" | "min"` the same pass also computes attention rollout (Abnar &
Zuidema 2020) per image: each layer's heads fused (mean, max or min over heads), plus the
identity, rows renormalised, multiplied through the layers (`R = A'_L ... A'_1`). The heads are
fused in the same scan over heads as the metrics and the product goes from layer to layer with
the tokens (the model's `attention_carry`); XLA:CPU's buffer assignment then holds about one
extra [B, T, T] float32 product per layer (depth / num_heads of a layer's maps; measured in
tests/test_analyze_checkpoint.py). The map is the CLS token's row of R over the patches, or,
without a class token, the mean of the patch rows.

`analyze_params` runs the pass over a set of images like the eval loop does (batch sharded over the
('data',) mesh, parameters replicated, the last batch padded and masked) and accumulates the sums
on the host in float64, so the result is the exact mean over images and query patches with equal
weights, whatever the batch size or the device count (up to float32 rounding inside a batch).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from vit_locality.analysis.locality import locality_sums
from vit_locality.data.eval_input import eval_batches
from vit_locality.models import ViT
from vit_locality.parallel import sharding
from vit_locality.predict import Predictor


def patch_grid(model: ViT, image_size: int | tuple[int, int]) -> tuple[int, int]:
    """`(gh, gw)`, the patch grid of `model` on square (int) or `(H, W)` images, in patches."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    return height // model.patch_size, width // model.patch_size


ROLLOUT_FUSIONS = ("mean", "max", "min")


def rollout_step(fused: jax.Array, previous: jax.Array) -> jax.Array:
    """One layer of attention rollout.

    Args:
      fused: the layer's attention with its heads fused, [B, T, T] (queries on axis -2).
      previous: the rollout of the layers below, [B, T, T] (the identity below the first).

    Returns:
      float32 [B, T, T]: `A' @ previous` with `A' = rownorm(fused + I)`.
    """
    fused = fused + jnp.eye(fused.shape[-1], dtype=jnp.float32)
    fused = fused / fused.sum(-1, keepdims=True)
    return jnp.matmul(fused, previous, precision=jax.lax.Precision.HIGHEST)


def rollout_map(rollout: jax.Array, model: ViT) -> jax.Array:
    """[B, T, T] rollout -> [B, N] over the patches: the CLS row, or the mean of the patch rows
    when the model has no class token."""
    p = model.num_prefix_tokens
    if model.has_class_token:
        return rollout[:, 0, p:]
    return rollout[:, p:, p:].mean(1)


@functools.lru_cache(maxsize=8)
def make_locality_pass(predictor: Predictor, rollout: str | None = None) -> jax.stages.Wrapped:
    """The jitted pass `f(params, images, mask) -> (sums, count)` of `predictor`'s model
    (`(sums, count, maps)` with `rollout`).

    Cached on its (hashable) arguments, so a train loop that analyses every few epochs compiles it
    once per input shape.

    Args:
      predictor: the ViT with its dataset's normalization; the ViT's `patch_size` and
        `num_prefix_tokens` define the token grid. It runs in float32 whatever its `dtype`.
      rollout: None, or the head fusion of attention rollout (one of ROLLOUT_FUSIONS).

    Returns:
      A jitted function of `params` (the model's parameter pytree), `images` (uint8
      `[B, H, W, C]`, H and W multiples of the patch size) and `mask` (bool `[B]`, False for
      padding images), returning `sums`, name -> float32 `[L, H]` sums over the real images and
      their query patches of every metric in `locality.DEFINITIONS`, and `count`, the int32 number
      of (image, query patch) pairs summed. `locality.finalize(sums, count)` gives the means.
      With `rollout`, also `maps`: float32 `[B, gh, gw]`, each image's rollout map (see the module
      docstring); padding images get maps too, to be dropped by the caller.
    """
    if rollout is not None and rollout not in ROLLOUT_FUSIONS:
        raise ValueError(f"rollout={rollout!r}: one of {ROLLOUT_FUSIONS}")
    model = predictor.model

    def locality_pass(
        params: Any, images: jax.Array, mask: jax.Array
    ) -> tuple[dict[str, jax.Array], jax.Array]:
        grid = patch_grid(model, images.shape[1:3])
        reduce_one_head = functools.partial(
            locality_sums,
            grid=grid,
            num_prefix_tokens=model.num_prefix_tokens,
            patch_size=model.patch_size,
            mask=mask,
        )

        def reduce_layer(probs: jax.Array) -> tuple[dict[str, jax.Array], jax.Array]:
            # One head at a time: the reduction's float32 temporaries are [B, 1, T, T] each,
            # 1/num_heads of the layer's maps, instead of several copies of [B, H, T, T].
            def head(_: None, h: jax.Array) -> tuple[None, tuple[dict[str, jax.Array], jax.Array]]:
                return None, reduce_one_head(jax.lax.dynamic_index_in_dim(probs, h, axis=1))

            _, (sums, counts) = jax.lax.scan(head, None, jnp.arange(probs.shape[1]))
            return {k: v[:, 0] for k, v in sums.items()}, counts[0]  # [H] each; count scalar

        def reduce_and_roll(probs: jax.Array, previous: jax.Array) -> tuple[Any, jax.Array]:
            # Heads fused inside the same scan over heads as the metrics: probs is read once.
            combine = {"mean": jnp.add, "max": jnp.maximum, "min": jnp.minimum}[rollout]

            def head(fused: jax.Array, h: jax.Array) -> tuple[jax.Array, Any]:
                one = jax.lax.dynamic_index_in_dim(probs, h, axis=1)  # [B, 1, T, T]
                return combine(fused, one[:, 0].astype(jnp.float32)), reduce_one_head(one)

            first = probs[:, 0].astype(jnp.float32)  # max / min start from head 0, sum from 0
            start = jnp.zeros_like(first) if rollout == "mean" else first
            fused, (sums, counts) = jax.lax.scan(head, start, jnp.arange(probs.shape[1]))
            fused = fused / probs.shape[1] if rollout == "mean" else fused
            reduced = ({k: v[:, 0] for k, v in sums.items()}, counts[0])
            return reduced, rollout_step(fused, previous)

        forward = predictor.in_float32()
        if rollout is None:
            _, out = forward(params, images, reduce_attention=reduce_layer)
        else:  # the rollout goes from layer to layer with the tokens, through the same barrier
            tokens = model.num_prefix_tokens + grid[0] * grid[1]
            identity = jnp.broadcast_to(jnp.eye(tokens), (images.shape[0], tokens, tokens))
            _, out = forward(
                params, images, reduce_attention=reduce_and_roll, attention_carry=identity
            )
        per_layer = out["attention_reduced"]  # depth x (sums {name: [H]}, count)
        sums = {k: jnp.stack([layer[0][k] for layer in per_layer]) for k in per_layer[0][0]}
        if rollout is None:
            return sums, per_layer[0][1]
        maps = rollout_map(out["attention_carry"], model).reshape(images.shape[0], *grid)
        return sums, per_layer[0][1], maps

    return jax.jit(locality_pass)


def analyze_params(
    predictor: Predictor,
    params: Any,
    images: np.ndarray,
    *,
    mesh: Mesh,
    batch_size: int,
    rollout: str | None = None,
) -> dict[str, np.ndarray]:
    """Every per-head locality metric of `model` with `params`, averaged over `images`.

    Every process passes the same `images` and gets the same result; each feeds its own rows of
    every global batch.

    Args:
      predictor: the ViT with its dataset's normalization.
      params: its parameter pytree (placed replicated on `mesh`; a no-op when it already is).
      images: uint8 `[N, H, W, C]`, the raw (unnormalized) eval images, N >= 1.
      mesh: the ('data',) mesh; batches are split over it.
      batch_size: global images per batch, rounded up to a multiple of the device count; the
        last batch is padded with masked zeros.
      rollout: None, or the head fusion of attention rollout, computed in the same pass (one
        process only: the maps are per image, not reduced across processes).

    Returns:
      name -> float64 `[L, H]` NumPy array, the mean over the N images and their query patches of
      every metric in `locality.DEFINITIONS` (units there); with `rollout`, also "rollout":
      float64 `[N, gh, gw]`, every image's rollout map.
    """
    batch_size = -(-max(batch_size, 1) // mesh.size) * mesh.size
    locality_pass = make_locality_pass(predictor, rollout)
    params = jax.device_put(params, sharding.replicated(mesh))
    data_sharding = sharding.batch_sharded(mesh)
    pending = []  # dispatch every batch before fetching any result, so the device never waits
    for batch in eval_batches(
        images,
        np.zeros(len(images), np.int32),
        global_batch_size=batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    ):
        batch = sharding.to_global({"image": batch["image"], "mask": batch["mask"]}, data_sharding)
        pending.append(locality_pass(params, batch["image"], batch["mask"]))
    totals: dict[str, np.ndarray] = {}
    count = 0
    maps = []
    for sums, batch_count, *batch_maps in jax.device_get(pending):
        for name, value in sums.items():
            totals[name] = totals.get(name, 0.0) + np.asarray(value, np.float64)
        count += int(batch_count)
        maps.extend(np.asarray(m, np.float64) for m in batch_maps)
    result = {name: total / count for name, total in totals.items()}
    if rollout is not None:  # global batches in order, the padding at the end of the last one
        result["rollout"] = np.concatenate(maps)[: len(images)]
    return result


@functools.partial(jax.jit, static_argnames=("predictor",))
def _query_attention(params: Any, images: jax.Array, *, predictor: Predictor) -> jax.Array:
    model = predictor.model
    gh, gw = patch_grid(model, images.shape[1:3])
    p = model.num_prefix_tokens
    query = p + (gh // 2) * gw + gw // 2

    def centre_row(probs: jax.Array) -> jax.Array:
        row = probs[:, :, query, p:]  # [B, H, N]: the centre patch's attention over patches
        return row / jnp.maximum(row.sum(-1, keepdims=True), jnp.finfo(jnp.float32).tiny)

    _, out = predictor.in_float32()(params, images, reduce_attention=centre_row)
    return jnp.stack(out["attention_reduced"]).reshape(-1, images.shape[0], model.num_heads, gh, gw)


def centre_attention_layers(predictor: Predictor, params: Any, images: np.ndarray) -> np.ndarray:
    """Every layer's attention of the centre patch query, for a few images (for figures),
    computed in float32 in one pass.

    The query is the patch at grid cell `(gh // 2, gw // 2)`; its attention over the patch keys
    is renormalized to sum to 1 (the `At` of the locality definitions).

    Args:
      predictor, params: the ViT with its normalization, and its parameters.
      images: uint8 `[B, H, W, C]`, a few raw images.

    Returns:
      float32 `[L, B, num_heads, gh, gw]`: the attention weight of each key patch.
    """
    return np.asarray(_query_attention(params, images, predictor=predictor))


def centre_attention(
    predictor: Predictor, params: Any, images: np.ndarray, *, layer: int = 0
) -> np.ndarray:
    """`centre_attention_layers(...)[layer]`: float32 `[B, num_heads, gh, gw]`, one layer's
    attention of the centre patch query (layer 0 = the first)."""
    return centre_attention_layers(predictor, params, images)[layer]
