"""The random streams of a run on the device, each with its own id under `key(seed)`, so no two
ever draw the same numbers, and each a function of a counter (step, epoch, stream position), so
a resumed run draws exactly what an uninterrupted one would.

    params   init_key(seed)                  parameter initialization
    step     step_key(seed, step)            per train step; each "step" component of the
                                             protocol folds in its stream (CutMix/Mixup 0,
                                             erasing 1: vit_locality.augment.registry)
    order    permutation_key(seed, epoch)    on-device input: the order of an epoch's examples
    augment  augment_key(seed, position)     on-device input: crop/flip of one stream position

(The tf.data input draws from TensorFlow's stateless seeds; see `data/train_input.py`.)
"""

from __future__ import annotations

import jax

_PARAMS, _STEP, _ORDER, _AUGMENT = range(4)  # streams under key(seed)


def _stream(seed: int, stream: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), stream)


def init_key(seed: int) -> jax.Array:
    return _stream(seed, _PARAMS)


def step_key(seed: int, step: jax.Array | int) -> jax.Array:
    """The key of train step `step`; its components fold in their streams."""
    return jax.random.fold_in(_stream(seed, _STEP), step)


def permutation_key(seed: int, epoch: jax.Array | int) -> jax.Array:
    return jax.random.fold_in(_stream(seed, _ORDER), epoch)


def augment_key(seed: int, position: jax.Array | int) -> jax.Array:
    """The key of the example at `position` = step * global_batch_size + row."""
    return jax.random.fold_in(_stream(seed, _AUGMENT), position)
