"""The train input on the device (`data.on_device=True`): no TensorFlow, no host in the loop.

The decoded training set (uint8) is put on every device once, each process placing its own
devices' copies (with several processes, `jax.device_put` of a host array would first all-gather
it to check that every process holds the same). Each step's global batch is
gathered and augmented there by a jitted function of the step number, with the same epoch
structure as the tf.data input (a permutation per epoch, full batches, remainder dropped) but
JAX's random streams, so the batches differ from tf.data's while staying a function of the step:
resume is exact. Every "image" component of the protocol runs here in its device form
(`vit_locality.augment.registry.device_image_ops`: zero-pad + random crop and flip, then
AutoAugment and/or ColorJitter, the tf.data ops' semantics bit for bit). The example at stream
position p draws from `rng.augment_key(seed, p)`, each component from its stream folded in (crop
and flip 0, AutoAugment 1, ColorJitter 2).
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding

from vit_locality import rng
from vit_locality.augment import registry
from vit_locality.parallel import sharding
from vit_locality.plan import steps_per_epoch

ImageOps = list[tuple[int, registry.DeviceImageOp]]


def augment_one(key: jax.Array, image: jax.Array, ops: ImageOps) -> jax.Array:
    """The train augmentation of one uint8 `[H, W, C]` image: each "image" component's device
    form in order, with `fold_in(key, stream)`."""
    for stream, op in ops:
        image = op(jax.random.fold_in(key, stream), image)
    return image


def make_batch_fn(num_examples: int, global_batch_size: int, *, seed: int, ops: ImageOps):
    """`(images [N,H,W,C], labels [N], step) -> {"image": [B,H,W,C], "label": [B]}`, jittable."""
    spe = steps_per_epoch(num_examples, global_batch_size)

    def batch_fn(images: jax.Array, labels: jax.Array, step: jax.Array) -> dict[str, jax.Array]:
        epoch, within = step // spe, step % spe
        order = jax.random.permutation(rng.permutation_key(seed, epoch), num_examples)
        rows = jax.lax.dynamic_slice(order, (within * global_batch_size,), (global_batch_size,))
        positions = step * global_batch_size + jnp.arange(global_batch_size)
        keys = jax.vmap(lambda p: rng.augment_key(seed, p))(positions)
        augmented = jax.vmap(lambda k, x: augment_one(k, x, ops))(keys, images[rows])
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
    ops: ImageOps,
) -> Iterator[dict[str, jax.Array]]:
    """Global batches of steps `start_step .. total_steps-1`, already sharded over `mesh`; no
    collective but the batch function's own."""
    replicated = sharding.replicated(mesh)
    images_d = _on_local_devices(images, replicated)
    labels_d = _on_local_devices(labels.astype(np.int32), replicated)
    batch_fn = jax.jit(
        make_batch_fn(len(images), global_batch_size, seed=seed, ops=ops),
        out_shardings=sharding.batch_sharded(mesh),
    )
    for step in range(start_step, total_steps):
        yield batch_fn(images_d, labels_d, _on_local_devices(np.int32(step), replicated))


def _on_local_devices(value: np.ndarray | np.generic, replicated: NamedSharding) -> jax.Array:
    """`value`, the same on every process, as a global array replicated over `replicated`'s
    devices: this process places its own devices' copies, without asking the others."""
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, replicated, lambda index: value[index])
