"""The train and eval steps, pure functions of (state or params, batch); no TensorFlow needed.

The train step receives uint8 images straight from the input pipeline and does, on the device:
normalization, the protocol's "step" components (`vit_locality.augment.registry.step_ops`:
random erasing, label smoothing, CutMix/Mixup, in that order), forward, backward and the AdamW
update. Its randomness is `rng.step_key(seed, step)`, a function of the step alone (each component
folds in its stream), so a resumed run draws exactly what an uninterrupted one would.
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
from vit_locality.augment import registry
from vit_locality.parallel import sharding
from vit_locality.predict import Predictor, normalize
from vit_locality.train_state import TrainState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


def make_train_step(
    predictor: Predictor,
    *,
    num_classes: int,
    protocol_ops: list[tuple[int, registry.StepOp]],
    seed: int,
    schedule: optax.Schedule,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """The (unjitted) step: `(state, {"image": uint8 [B,H,W,C], "label": int [B]}) ->
    (state, {"loss", "grad_norm", "lr", "lam"})`; `loss` is the mean over the batch of the soft-
    target cross-entropy, `lr` the rate the update used, `lam` mixing's (1 unmixed).
    `protocol_ops`: (stream, op) of the "step" components, applied in order to the normalized
    images and the one-hot targets, each with the step's key folded with its stream."""

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        key = rng.step_key(seed, state.step)
        images = normalize(batch["image"], predictor.mean, predictor.std)
        targets = jax.nn.one_hot(batch["label"], num_classes, dtype=jnp.float32)
        info: dict[str, jax.Array] = {}
        for stream, op in protocol_ops:
            images, targets, extra = op(jax.random.fold_in(key, stream), images, targets)
            info.update(extra)

        def loss_fn(params: Any) -> jax.Array:
            logits, _ = predictor.model.apply({"params": params}, images)
            return optax.softmax_cross_entropy(logits, targets).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "lr": schedule(state.step),
            "lam": info.get("lam", jnp.float32(1.0)),
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
    """`make_train_step` with `config`'s protocol, jitted over `mesh` with the state donated
    and replicated, batches sharded along their first axis (mixing pairs within each shard)."""
    replicated = sharding.replicated(mesh)
    return jax.jit(
        make_train_step(
            predictor,
            num_classes=predictor.model.num_classes,
            protocol_ops=registry.step_ops(config, mesh.size),
            seed=config.seed,
            schedule=schedule,
        ),
        donate_argnums=(0,),
        out_shardings=(replicated, replicated),
    )
