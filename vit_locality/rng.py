"""The random streams of a run on the device, each with its own id under `key(seed)`, so no two
ever draw the same numbers, and each a function of a counter (step, epoch, stream position), so
a resumed run draws exactly what an uninterrupted one would.

    params   init_key(seed)                  parameter initialization
    step     step_keys(seed, step)           per train step: "mix" (CutMix/Mixup), "erase"
    order    permutation_key(seed, epoch)    on-device input: the order of an epoch's examples
    augment  augment_key(seed, position)     on-device input: crop/flip of one stream position

(The tf.data input draws from TensorFlow's stateless seeds; see `data/train_input.py`.)
"""

from __future__ import annotations

import jax

_PARAMS, _STEP, _ORDER, _AUGMENT = range(4)  # streams under key(seed)
_MIX, _ERASE = range(2)  # sub-streams of each step's key


def _stream(seed: int, stream: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), stream)


def init_key(seed: int) -> jax.Array:
    return _stream(seed, _PARAMS)


def step_keys(seed: int, step: jax.Array | int) -> dict[str, jax.Array]:
    """{"mix": ..., "erase": ...}: the keys of train step `step`."""
    rng = jax.random.fold_in(_stream(seed, _STEP), step)
    return {"mix": jax.random.fold_in(rng, _MIX), "erase": jax.random.fold_in(rng, _ERASE)}


def permutation_key(seed: int, epoch: jax.Array | int) -> jax.Array:
    return jax.random.fold_in(_stream(seed, _ORDER), epoch)


def augment_key(seed: int, position: jax.Array | int) -> jax.Array:
    """The key of the example at `position` = step * global_batch_size + row."""
    return jax.random.fold_in(_stream(seed, _AUGMENT), position)
