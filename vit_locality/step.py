"""The train state, the optimizer and the jitted train and eval steps (no TensorFlow needed).

The train step receives uint8 images straight from the input pipeline and does, on the device:
normalization, random erasing, label smoothing, CutMix/Mixup, forward, backward and the AdamW
update. Its randomness is `rng.step_keys(seed, step)`, a function of the step alone, so a resumed
run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import Mesh

from vit_locality import erasing as erasing_lib
from vit_locality import mixing, rng, sharding
from vit_locality.data.datasets import DATASETS

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


class TrainState(train_state.TrainState):
    """params + AdamW state + step (the step counts applied updates)."""


def make_schedule(peak_lr: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to `peak_lr` over `warmup_steps`, then cosine decay to 0."""
    return optax.warmup_cosine_decay_schedule(
        0.0, peak_lr, warmup_steps=warmup_steps, decay_steps=total_steps, end_value=0.0
    )


def make_optimizer(
    schedule: optax.Schedule, weight_decay: float, grad_clip_norm: float
) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW; weight decay on the weight matrices (Flax's `kernel`s:
    Dense, DenseGeneral, the patch embedding) only, not on biases (the qkv bias has 3 axes),
    LayerNorm scales, the position embedding or the CLS token."""

    def decay_mask(params: Any) -> Any:
        return jax.tree_util.tree_map_with_path(lambda path, p: path[-1].key == "kernel", params)

    return optax.chain(
        optax.clip_by_global_norm(grad_clip_norm),
        optax.adamw(schedule, b1=0.9, b2=0.999, weight_decay=weight_decay, mask=decay_mask),
    )


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation, seed: int, image_shape: tuple[int, ...]
) -> TrainState:
    """Fresh parameters from `key(seed)`; `image_shape` is (H, W, C). Jit it with out_shardings."""
    dummy = jnp.zeros((1, *image_shape), jnp.float32)
    params = model.init(rng.init_key(seed), dummy)["params"]
    return TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def normalize(images: jax.Array, mean: tuple[float, ...], std: tuple[float, ...]) -> jax.Array:
    """uint8 [B, H, W, C] -> float32 (x / 255 - mean) / std, per channel."""
    mean_ = np.asarray(mean, np.float32)
    std_ = np.asarray(std, np.float32)
    return (images.astype(jnp.float32) / 255.0 - mean_) / std_


def make_train_step(
    model: nn.Module,
    *,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    mix: mixing.MixSpec,
    label_smoothing: float,
    num_shards: int,
    seed: int,
    schedule: optax.Schedule,
    erasing: erasing_lib.ErasingSpec | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """The (unjitted) step: `(state, {"image": uint8 [B,H,W,C], "label": int [B]}) ->
    (state, {"loss", "grad_norm", "lr", "lam"})`; `loss` is the mean over the batch of the soft-
    target cross-entropy, `lr` the rate the update used. `erasing` (None = off) erases boxes of
    the normalized images before mixing, with its own key, so mixing draws the same numbers with
    erasing on or off."""

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        keys = rng.step_keys(seed, state.step)
        images = normalize(batch["image"], mean, std)
        if erasing is not None:
            images = erasing_lib.random_erasing(keys["erase"], images, erasing)
        targets = mixing.smooth_labels(batch["label"], num_classes, label_smoothing)
        images, targets, mix_info = mixing.mix_batch(keys["mix"], images, targets, mix, num_shards)

        def loss_fn(params: Any) -> jax.Array:
            logits, _ = model.apply({"params": params}, images)
            return optax.softmax_cross_entropy(logits, targets).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "lr": schedule(state.step),
            "lam": mix_info["lam"],
        }
        return state.apply_gradients(grads=grads), metrics

    return train_step


def make_eval_step(
    model: nn.Module, *, num_classes: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> Callable[[Any, Batch], Metrics]:
    """`(params, {"image", "label", "mask"}) -> sums over the real (mask=1) examples of
    "loss" (cross-entropy with hard labels), "correct@1", "correct@5", and their "count"."""

    def eval_step(params: Any, batch: Batch) -> Metrics:
        logits, _ = model.apply({"params": params}, normalize(batch["image"], mean, std))
        labels = batch["label"]
        mask = batch["mask"].astype(jnp.float32)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        top5 = jax.lax.top_k(logits, min(5, num_classes))[1]
        return {
            "loss": jnp.sum(loss * mask),
            "correct@1": jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
            "correct@5": jnp.sum(jnp.any(top5 == labels[:, None], axis=-1) * mask),
            "count": jnp.sum(mask),
        }

    return eval_step


def init_state(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    tx: optax.GradientTransformation,
    mesh: Mesh,
) -> TrainState:
    """Fresh train state of `config`'s dataset shape, created already replicated over `mesh`."""
    info = DATASETS[config.dataset]
    shape = (info.image_size, info.image_size, info.channels)
    return jax.jit(
        lambda: create_train_state(model, tx, config.seed, shape),
        out_shardings=sharding.replicated(mesh),
    )()


def jit_train_step(
    config: ml_collections.ConfigDict, model: nn.Module, schedule: optax.Schedule, mesh: Mesh
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """`make_train_step` with `config`'s protocol (mixing, label smoothing, erasing), jitted over
    `mesh` with the state donated and replicated, batches sharded along their first axis."""
    info = DATASETS[config.dataset]
    replicated = sharding.replicated(mesh)
    return jax.jit(
        make_train_step(
            model,
            num_classes=info.num_classes,
            mean=info.mean,
            std=info.std,
            mix=mixing.MixSpec(**config.mix.to_dict()),
            label_smoothing=config.label_smoothing,
            num_shards=mesh.size,
            seed=config.seed,
            schedule=schedule,
            erasing=erasing_lib.ErasingSpec(
                config.aug.random_erasing, config.aug.random_erasing_mode
            ),
        ),
        donate_argnums=(0,),
        out_shardings=(replicated, replicated),
    )
