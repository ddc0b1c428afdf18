"""Several processes, one run (JAX's multi-controller runtime): starting it, and agreeing.

`initialize` starts the runtime the way the machine asks: from `JAX_COORDINATOR_ADDRESS`,
`JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` when all three are set (several processes on one or more
machines without a cluster manager), else by JAX's own detection (Cloud TPU VMs, Slurm, Open MPI).
A coordinator that does not answer is a one-line `UserError`, not the runtime's abort; a
collective that cannot complete (a process stopped, died or hangs) ends the run through
`Watchdog` with one line, instead of blocking for ever.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from vit_locality.errors import UserError

_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def _wait_for(address: str, timeout_s: float) -> bool:
    """Whether a TCP connection to `host:port` opens within `timeout_s` seconds."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)


def initialize(timeout_s: int) -> None:
    """Starts JAX's distributed runtime; UserError when the environment is incomplete or the
    coordinator (process 0) does not answer within `timeout_s` seconds."""
    given = {name: os.environ.get(name) for name in _ENV}
    if not any(given.values()):
        jax.distributed.initialize(initialization_timeout=timeout_s)
        return
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise UserError(f"--multihost: {', '.join(_ENV)} go together; {missing[0]} is not set")
    address = given["JAX_COORDINATOR_ADDRESS"]
    try:
        count, index = int(given["JAX_NUM_PROCESSES"]), int(given["JAX_PROCESS_ID"])
    except ValueError:
        raise UserError(
            f"--multihost: JAX_NUM_PROCESSES={given['JAX_NUM_PROCESSES']!r} and "
            f"JAX_PROCESS_ID={given['JAX_PROCESS_ID']!r} must be integers"
        ) from None
    if not 0 <= index < count:
        raise UserError(f"--multihost: JAX_PROCESS_ID={index} is not in [0, {count})")
    # Process 0 hosts the coordinator; the others check it answers before the runtime, which
    # aborts the process (no exception) when it does not.
    if index > 0 and not _wait_for(address, timeout_s):
        raise UserError(
            f"--multihost: the coordinator at {address} did not answer within {timeout_s} s "
            f"(process {index} of {count}); start process 0 there, or fix JAX_COORDINATOR_ADDRESS"
        )
    jax.distributed.initialize(address, count, index, initialization_timeout=timeout_s)


def any_process(flag: bool) -> bool:
    """Whether `flag` is true on any process. A collective: every process calls it at the same
    point of the loop."""
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def from_process_0(flags: list[bool]) -> list[bool]:
    """Process 0's `flags` on every process (the same length everywhere). A collective."""
    if jax.process_count() == 1:
        return flags
    return [bool(f) for f in multihost_utils.broadcast_one_to_all(np.asarray(flags, bool))]


def barrier(name: str) -> None:
    """Waits until every process has reached the barrier `name`."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def gather(values: list[float]) -> np.ndarray:
    """Every process's `values`: float32 `[processes, len(values)]`, in process order. A
    collective."""
    return np.asarray(multihost_utils.process_allgather(np.asarray(values, np.float32)))


class Watchdog:
    """Ends this process when the run has not moved for `timeout_s` seconds while several
    processes share it: one line on stderr naming the step of the last `beat`, exit status 1
    (committed checkpoints are kept). A daemon thread, started only with several processes and
    a positive `timeout_s`; it watches from the first `beat` on (after the step has compiled)."""

    def __init__(self, timeout_s: float):
        self._timeout_s = timeout_s
        self._step: int | None = None
        self._last = time.monotonic()
        self._stopped = threading.Event()
        if timeout_s > 0 and jax.process_count() > 1:
            threading.Thread(target=self._watch, daemon=True).start()

    def beat(self, step: int) -> None:
        """The run has moved: at `step`, now."""
        self._step, self._last = step, time.monotonic()

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(1.0):
            if self._step is not None and time.monotonic() - self._last > self._timeout_s:
                print(
                    f"error: step {self._step}: the processes did not all get past it within "
                    f"{self._timeout_s:g} s (a process stopped, died or hangs in a collective); "
                    "committed checkpoints are kept: run again to resume",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(1)
