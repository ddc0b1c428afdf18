"""Data parallelism over a 1-D ('data',) device mesh with `jax.jit` and `NamedSharding`.

The train state is replicated; batches are split along their leading axis. Each process feeds
its own rows of the global batch, which `to_global` assembles into one global
array without any host-to-host traffic.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A ('data',) mesh over the first `num_devices` devices (default: all of them)."""
    devices = jax.devices()
    num_devices = num_devices or len(devices)
    return jax.make_mesh(
        (num_devices,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices[:num_devices]
    )


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the devices."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """This process's rows of every array -> global arrays sharded along the batch axis."""
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def prefetch_to_device(
    batches: Iterable[dict[str, np.ndarray]], sharding: NamedSharding, size: int = 2
) -> Iterator[dict[str, jax.Array]]:
    """Keeps `size` batches in flight to the devices ahead of the consumer."""
    queue: collections.deque = collections.deque()
    iterator = iter(batches)
    for batch in iterator:
        queue.append(to_global(batch, sharding))
        if len(queue) >= size:
            yield queue.popleft()
    while queue:
        yield queue.popleft()
