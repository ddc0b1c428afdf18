"""Label smoothing: `smooth(y) = (1 - eps) * onehot(y) + eps / K`, in the train step.

    label_smoothing    eps in [0, 1); 0 = off (Modern: 0.1)

In the step (order 20: after random erasing, before mixing, which mixes smoothed targets; no
randomness). Smoothing is linear, so smoothing before or after mixing is the same. Condition key
`ls` (`ls(eps=0.2)` at another value).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vit_locality.augment import registry
from vit_locality.config_checks import check_range


def _check(config, context: registry.CheckContext) -> None:
    check_range(config, "label_smoothing", 0.0, 1.0, high_open=True)


def smooth(targets: jax.Array, eps: float) -> jax.Array:
    """One-hot float targets [B, K] -> `(1 - eps) * targets + eps / K`."""
    return targets * (1.0 - eps) + eps / targets.shape[-1]


def smooth_labels(labels: jax.Array, num_classes: int, eps: float) -> jax.Array:
    """int labels [B] -> float32 targets [B, K]: (1 - eps) * onehot + eps / K."""
    return smooth(jax.nn.one_hot(labels, num_classes, dtype=jnp.float32), eps)


def _step_form(config, num_shards: int):
    eps = config.label_smoothing
    return lambda key, images, targets: (images, smooth(targets, eps), {})


LABEL_SMOOTHING = registry.register(
    registry.Component(
        name="label_smoothing",
        stage="step",
        fields={"label_smoothing": 0.0},
        on_fields=("label_smoothing",),
        stream=2,
        order=20,
        key="ls",
        row=60,
        title="Label sm.",
        switch={"label_smoothing": 0.1},
        settings={"eps": "label_smoothing"},
        check=_check,
        step_form=_step_form,
    )
)
