"""The train and eval steps, pure functions of (state or params, batch); no TensorFlow needed.

The train step receives uint8 images straight from the input pipeline and does, on the device:
normalization, random erasing, label smoothing, CutMix/Mixup, forward, backward and the AdamW
update. Its randomness is `rng.step_keys(seed, step)`, a function of the step alone, so a resumed
run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from vit_locality import rng
from vit_locality.augment import erasing as erasing_lib
from vit_locality.augment import mixing
from vit_locality.parallel import sharding
from vit_locality.predict import Predictor, normalize
from vit_locality.train_state import TrainState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


def make_train_step(
    predictor: Predictor,
    *,
    num_classes: int,
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
        images = normalize(batch["image"], predictor.mean, predictor.std)
        if erasing is not None:
            images = erasing_lib.random_erasing(keys["erase"], images, erasing)
        targets = mixing.smooth_labels(batch["label"], num_classes, label_smoothing)
        images, targets, mix_info = mixing.mix_batch(keys["mix"], images, targets, mix, num_shards)

        def loss_fn(params: Any) -> jax.Array:
            logits, _ = predictor.model.apply({"params": params}, images)
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


def make_eval_step(predictor: Predictor, num_classes: int) -> Callable[[Any, Batch], Metrics]:
    """`(params, {"image", "label", "mask"}) -> sums over the real (mask=1) examples of
    "loss" (cross-entropy with hard labels), "correct@1", "correct@5", and their "count"."""

    def eval_step(params: Any, batch: Batch) -> Metrics:
        logits, _ = predictor(params, batch["image"])
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


def jit_train_step(
    config: ml_collections.ConfigDict,
    predictor: Predictor,
    schedule: optax.Schedule,
    mesh: Mesh,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """`make_train_step` with `config`'s protocol (mixing, label smoothing, erasing), jitted over
    `mesh` with the state donated and replicated, batches sharded along their first axis."""
    replicated = sharding.replicated(mesh)
    return jax.jit(
        make_train_step(
            predictor,
            num_classes=predictor.model.num_classes,
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
