"""The train state and the one way to build it: AdamW with linear warmup, then cosine decay
(or a constant learning rate: `config.schedule`),
parameters drawn from the run's seed, created already replicated on the mesh (`init_state`) or
described by shapes only (`abstract_state`, from `jax.eval_shape`) for a checkpoint to restore
onto. Train, analyze and the benchmarks all build their state here.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state
from jax.sharding import Mesh

from vit_locality import rng
from vit_locality.config_fields import SAVED_BEFORE, get_field
from vit_locality.datasets import DATASETS
from vit_locality.parallel import sharding
from vit_locality.plan import SCHEDULES, StepPlan


class TrainState(train_state.TrainState):
    """params + AdamW state + step (the step counts applied updates)."""


def make_schedule(
    peak_lr: float, warmup_steps: int, total_steps: int, kind: str = "cosine"
) -> optax.Schedule:
    """Linear warmup from 0 to `peak_lr` over `warmup_steps`, then (`kind`) cosine decay to 0 at
    `total_steps`, or `peak_lr` from then on (`constant`)."""
    if kind == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, peak_lr, warmup_steps=warmup_steps, decay_steps=total_steps, end_value=0.0
        )
    if kind == "constant":
        return optax.join_schedules(
            [
                optax.linear_schedule(0.0, peak_lr, warmup_steps),
                optax.constant_schedule(peak_lr),
            ],
            boundaries=[warmup_steps],
        )
    raise ValueError(f"schedule {kind!r} unknown; allowed: {', '.join(SCHEDULES)}")


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


def optimizer(
    config: ml_collections.ConfigDict, plan: StepPlan | None = None
) -> tuple[optax.Schedule, optax.GradientTransformation]:
    """(schedule, optimizer) of `config` over `plan`'s steps. Without a plan (a state restored
    for analysis) the schedule is constant: only the optimizer state's structure matters."""
    if plan is None:
        schedule = optax.constant_schedule(config.lr)
    else:
        kind = get_field(config, "schedule", SAVED_BEFORE["schedule"])
        schedule = make_schedule(config.lr, plan.warmup_steps, plan.total_steps, kind)
    return schedule, make_optimizer(schedule, config.wd, config.grad_clip_norm)


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation, seed: int, image_shape: tuple[int, ...]
) -> TrainState:
    """Fresh parameters from `rng.init_key(seed)`; `image_shape` is (H, W, C)."""
    dummy = jnp.zeros((1, *image_shape), jnp.float32)
    params = model.init(rng.init_key(seed), dummy)["params"]
    return TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def _create(
    config: ml_collections.ConfigDict, model: nn.Module, tx: optax.GradientTransformation
) -> TrainState:
    info = DATASETS[config.dataset]
    return create_train_state(model, tx, config.seed, (info.image_size,) * 2 + (info.channels,))


def init_state(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    tx: optax.GradientTransformation,
    mesh: Mesh,
) -> TrainState:
    """A fresh train state of `config`'s dataset shape, created already replicated over `mesh`."""
    return jax.jit(lambda: _create(config, model, tx), out_shardings=sharding.replicated(mesh))()


def abstract_state(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    tx: optax.GradientTransformation,
    mesh: Mesh,
) -> TrainState:
    """The shapes, dtypes and (replicated) shardings of `init_state`'s result, computing nothing:
    what a checkpoint restores onto, whatever mesh it was saved from."""
    replicated = sharding.replicated(mesh)
    shapes = jax.eval_shape(lambda: _create(config, model, tx))
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), shapes
    )
