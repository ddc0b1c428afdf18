"""The train input on the device (`data.on_device=True`): no TensorFlow, no host in the loop.

The decoded training set (uint8) is put on every device once, each process placing its own
devices' copies (with several processes, `jax.device_put` of a host array would first all-gather
it to check that every process holds the same). Each step's global batch is
gathered and augmented there by a jitted function of the step number, with the same epoch
structure as the tf.data input (a permutation per epoch, full batches, remainder dropped) but
JAX's random streams, so the batches differ from tf.data's while staying a function of the step:
resume is exact. Every protocol's augmentation runs here: zero-pad + random crop and flip, then
AutoAugment (CIFAR-10 policy) and/or ColorJitter (`vit_locality.augment.on_device`, the tf.data
ops' semantics bit for bit). The example at stream position p draws from
`rng.augment_key(seed, p)`: crop and flip from its sub-key 0, AutoAugment from 1, ColorJitter
from 2.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding

from vit_locality import rng
from vit_locality.augment import on_device
from vit_locality.parallel import sharding
from vit_locality.plan import steps_per_epoch


@dataclasses.dataclass(frozen=True)
class AugSpec:
    """The `config.aug` fields the device input applies."""

    padding: int
    flip: bool
    autoaugment: bool = False
    color_jitter: float = 0.0

    @classmethod
    def from_config(cls, aug: Any) -> AugSpec:
        return cls(aug.crop_padding, aug.flip, bool(aug.autoaugment), float(aug.color_jitter))


def pad_crop_flip(key: jax.Array, image: jax.Array, padding: int, flip: bool) -> jax.Array:
    """One uint8 [H, W, C] image: zero-pad by `padding`, random crop back, mirror with p = 1/2."""
    crop_key, flip_key = jax.random.split(key)
    height, width, channels = image.shape
    if padding > 0:
        padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
        offset = jax.random.randint(crop_key, (2,), 0, 2 * padding + 1)
        image = jax.lax.dynamic_slice(padded, (offset[0], offset[1], 0), (height, width, channels))
    if flip:
        image = jnp.where(jax.random.uniform(flip_key) < 0.5, image[:, ::-1], image)
    return image


def augment_one(key: jax.Array, image: jax.Array, aug: AugSpec) -> jax.Array:
    """The train augmentation of one uint8 `[H, W, C]` image (the order of `data/augment.py`)."""
    image = pad_crop_flip(jax.random.fold_in(key, 0), image, aug.padding, aug.flip)
    if aug.autoaugment:
        image = on_device.autoaugment(image, jax.random.fold_in(key, 1))
    if aug.color_jitter > 0:
        image = on_device.color_jitter(image, aug.color_jitter, jax.random.fold_in(key, 2))
    return image


def make_batch_fn(num_examples: int, global_batch_size: int, *, seed: int, aug: AugSpec):
    """`(images [N,H,W,C], labels [N], step) -> {"image": [B,H,W,C], "label": [B]}`, jittable."""
    spe = steps_per_epoch(num_examples, global_batch_size)

    def batch_fn(images: jax.Array, labels: jax.Array, step: jax.Array) -> dict[str, jax.Array]:
        epoch, within = step // spe, step % spe
        order = jax.random.permutation(rng.permutation_key(seed, epoch), num_examples)
        rows = jax.lax.dynamic_slice(order, (within * global_batch_size,), (global_batch_size,))
        positions = step * global_batch_size + jnp.arange(global_batch_size)
        keys = jax.vmap(lambda p: rng.augment_key(seed, p))(positions)
        augmented = jax.vmap(lambda k, x: augment_one(k, x, aug))(keys, images[rows])
        return {"image": augmented, "label": labels[rows]}

    return batch_fn


def device_train_batches(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    mesh: Mesh,
    global_batch_size: int,
    start_step: int,
    total_steps: int,
    seed: int,
    aug: AugSpec,
) -> Iterator[dict[str, jax.Array]]:
    """Global batches of steps `start_step .. total_steps-1`, already sharded over `mesh`; no
    collective but the batch function's own."""
    replicated = sharding.replicated(mesh)
    images_d = _on_local_devices(images, replicated)
    labels_d = _on_local_devices(labels.astype(np.int32), replicated)
    batch_fn = jax.jit(
        make_batch_fn(len(images), global_batch_size, seed=seed, aug=aug),
        out_shardings=sharding.batch_sharded(mesh),
    )
    for step in range(start_step, total_steps):
        yield batch_fn(images_d, labels_d, _on_local_devices(np.int32(step), replicated))


def _on_local_devices(value: np.ndarray | np.generic, replicated: NamedSharding) -> jax.Array:
    """`value`, the same on every process, as a global array replicated over `replicated`'s
    devices: this process places its own devices' copies, without asking the others."""
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, replicated, lambda index: value[index])
