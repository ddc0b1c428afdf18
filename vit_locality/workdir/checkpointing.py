"""Orbax checkpoints of the train state, behind one small class.

A step directory is written asynchronously and only counts once orbax has committed it, so a
process killed mid-save leaves the previous checkpoint as the latest one (its half-written
`<step>.orbax-checkpoint-tmp*` directory is never restored, and the next save of that step
replaces it). A checkpoint whose bytes are bad (tensorstore cannot decode them, a file is cut
short or missing, or they decode to non-finite numbers, which are never saved) raises
`UnreadableCheckpoint`, one line naming its step; `set_aside` moves it out of orbax's sight. One
that cannot be read for another reason (I/O, the network, memory) raises `UserError` and is left
as it is. A save that fails raises `UserError` with one line saying what to do. A save is not
started when the disk has less room than the state's bytes; one that fails later, in orbax's
background threads (the disk filled up meanwhile), surfaces at the next `save`, `wait` or
`close`.

A restore that fails part-way (one array undecodable) ends with every other read of it finished,
never abandoned: see `_run_every_task_to_the_end`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import shutil
import sys
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint._src import asyncio_utils

try:  # orbax 0.12's type-handler registry (see _save_each_array_from_one_replica)
    from orbax.checkpoint._src.metadata.array_metadata_store import Store as _ArrayMetadataStore
    from orbax.checkpoint._src.serialization.type_handler_registry import (
        GLOBAL_TYPE_HANDLER_REGISTRY as _REGISTRY,
    )
except ImportError:
    _REGISTRY = None

from vit_locality.errors import UserError, first_line, out_of_space
from vit_locality.workdir import is_remote

# How a failed write reaches us: an OSError from the main thread, or tensorstore's ValueError
# ("RESOURCE_EXHAUSTED: ... [os_error_code='28']") re-raised from orbax's background threads.
_SAVE_ERRORS = (OSError, ValueError)


class UnreadableCheckpoint(UserError):
    """A committed checkpoint whose files cannot be restored; the message names it."""


class _DropFailedSaveNoise(logging.Filter):
    """A failed background save is re-raised to `Checkpointer`, which reports it as one line.
    Before that, orbax logs it with a traceback from each of its threads, and asyncio logs
    every write future that ran out of space with it ("Future exception was never retrieved":
    tensorstore's ValueError or a plain OSError). Those records go; every other record stays,
    orbax's other errors included."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or not (
            "orbax" in record.pathname or record.name == "asyncio"
        ):
            return True
        failed = record.exc_info[1] if record.exc_info else None
        return not (failed and out_of_space(failed)) and not out_of_space(record.getMessage())


def _drop_orphaned_callback_errors(unraisable: Any, previous=sys.unraisablehook) -> None:
    """After a failed save, tensorstore still completes futures whose asyncio loop orbax has
    closed; each raises "Event loop is closed" into `sys.unraisablehook`, a traceback apiece."""
    error = unraisable.exc_value
    if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
        previous(unraisable)


def quiet_failed_saves() -> None:
    """Installs the filters above (for entry points that save: a failed save is then one line),
    and drops the RuntimeWarning of the write coroutines a failed save leaves unawaited
    ("coroutine 'async_serialize_from_host.<locals>.write_fragment' was never awaited", with
    tracemalloc's hint): orbax's other coroutines and everyone else's still warn."""
    logging.getLogger("absl").addFilter(_DropFailedSaveNoise())
    logging.getLogger("asyncio").addFilter(_DropFailedSaveNoise())
    sys.unraisablehook = _drop_orphaned_callback_errors
    warnings.filterwarnings(
        "ignore",
        message=r"coroutine 'async_serialize_from_host\.<locals>\.write_fragment' was never",
        category=RuntimeWarning,
    )


class _DropSaveWaitHint(logging.Filter):
    """orbax's warning that a save waited for the one before it ("Waiting for previous save to
    complete took 1.03 seconds. If this number is high, consider checkpointing less
    frequently."), which a loaded machine prints among the progress lines; the progress line's
    img/s shows what saving costs. Every other record stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            "orbax" in record.pathname
            and record.getMessage().startswith("Waiting for previous save to complete")
        )


def quiet_save_wait_hints() -> None:
    """Installs the filter above on absl's logger (for entry points that save)."""
    logging.getLogger("absl").addFilter(_DropSaveWaitHint())


def _run_every_task_to_the_end(coro: Any) -> Any:
    """orbax's `asyncio_utils._run_sync_via_new_loop` (how its `run_sync` runs every restore
    and save when no event loop is running), except that when `coro` fails, the loop's other
    tasks run to their end before the loop is closed.

    orbax reads a checkpoint's arrays as tasks under `asyncio.gather`, which returns at the
    first failure and leaves the other reads running; orbax then closes the loop, abandoning
    them. The garbage collector later closes each abandoned coroutine, and orbax's
    `_read_array_index_and_device_put` turns that GeneratorExit into an Exception (its
    `except BaseException` around the read), which Python prints as "Exception ignored in:
    <coroutine object _read_array_index_and_device_put ...>" and a traceback, one per read
    still in flight: on a machine where the failing read finishes first, a corrupt checkpoint
    printed dozens. Finished here, each read's result or error is collected instead (the
    first failure is still the one raised). A KeyboardInterrupt or SystemExit does not wait."""
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(coro)
        except Exception:
            while pending := asyncio.all_tasks(loop):
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            raise
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# orbax 0.12.8's run_sync looks the function up at each call; a newer orbax without it is left
# as it is (test_checkpointing checks that restores go through the function above).
if hasattr(asyncio_utils, "_run_sync_via_new_loop"):
    asyncio_utils._run_sync_via_new_loop = _run_every_task_to_the_end


def _save_each_array_from_one_replica() -> None:
    """In one process, orbax's replica-parallel save (its default unless JAX_PLATFORMS names
    gpu or cuda) writes a replicated array as one slice per device, each an eager `lax.slice`
    with its own offsets: one compilation per leaf and device at the first save (3.5 s of a
    2-layer ViT's first save on 8 CPU devices). One replica writes each array instead (the same
    values; each array in one chunk, which any reader restores). Several processes keep orbax's
    default, which spreads the writes over the hosts; so does an orbax whose registry moved."""
    if jax.process_count() == 1 and _REGISTRY is not None:
        handler = ocp.type_handlers.ArrayHandler(
            use_replica_parallel=False, array_metadata_store=_ArrayMetadataStore()
        )  # orbax's default handler (its metadata store) but for replica-parallel
        _REGISTRY.add(jax.Array, handler, override=True, ignore_warnings=True)


class Checkpointer:
    """Saves and restores `{"state": pytree, "meta": json dict}` under `directory`."""

    def __init__(self, directory: str | pathlib.Path | epath.Path, keep: int):
        _save_each_array_from_one_replica()
        self._directory = epath.Path(directory)
        self._manager = ocp.CheckpointManager(
            self._directory if is_remote(directory) else self._directory.absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Starts an asynchronous save (a no-op when `step` is already saved)."""
        if step in self._manager.all_steps():
            return
        self._check_room(state)
        try:
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
                force=True,
            )
        except _SAVE_ERRORS as e:
            raise self._save_failed(e) from e

    def restore(self, step: int, like: Any) -> tuple[Any, dict[str, Any]]:
        """Restores step `step` onto the shapes, dtypes and shardings of the pytree `like`;
        UnreadableCheckpoint when its files cannot be decoded or hold non-finite numbers."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as e:  # tensorstore raises a bare Exception on undecodable data
            reason = _reason(e)
            if not _is_corruption(e):  # I/O, the network, memory: the checkpoint may be fine
                path = self._directory / str(step)
                raise UserError(
                    f"checkpoint {path} cannot be restored ({reason}); it is left as it is: "
                    "run again once that is fixed"
                ) from e
            raise self._unreadable(step, reason) from e
        if not _all_finite(restored.state):
            raise self._unreadable(step, "it holds non-finite numbers, which are never saved")
        return restored.state, restored.meta

    def set_aside(self, step: int) -> epath.Path:
        """Renames the unreadable checkpoint `step` to `<step>.corrupt` (`<step>.corrupt.N` when
        that exists: out of orbax's sight, so the step can be saved again); returns the new
        path. Process 0 calls it."""
        path = self._directory / str(step)
        aside = path.with_name(f"{step}.corrupt")
        n = 1
        while aside.exists():
            aside, n = path.with_name(f"{step}.corrupt.{n}"), n + 1
        path.rename(aside)
        return aside

    def reload(self) -> None:
        """Reads the committed steps again (after another process set one aside)."""
        self._manager.reload()

    def _unreadable(self, step: int, reason: str) -> UnreadableCheckpoint:
        return UnreadableCheckpoint(
            f"checkpoint {self._directory / str(step)} cannot be restored ({reason})"
        )

    def wait(self) -> None:
        """Blocks until every started save is committed to disk."""
        try:
            self._manager.wait_until_finished()
        except _SAVE_ERRORS as e:
            raise self._save_failed(e) from e

    def close(self) -> None:
        """Waits for the started saves, then stops orbax's threads (also when a save failed)."""
        try:
            self.wait()
        finally:
            self._manager.close()

    def _check_room(self, state: Any) -> None:
        """Refuses to start a save the disk cannot hold (orbax's files are at most the state's
        bytes: zstd-compressed arrays plus a little metadata)."""
        if is_remote(self._directory):  # a bucket has no free-space figure
            return
        needed = sum(leaf.nbytes for leaf in jax.tree.leaves(state)) + 2**20
        free = shutil.disk_usage(self._directory).free
        if free < needed:
            raise UserError(
                f"saving a checkpoint in {self._directory} needs up to {needed / 2**20:.1f} MiB "
                f"but {free / 2**20:.1f} MiB are free; {self._kept()}: free space and run again "
                "to resume"
            )

    def _save_failed(self, error: Exception) -> UserError:
        no_space = out_of_space(error)
        if no_space:
            return UserError(
                f"saving a checkpoint in {self._directory} failed ({no_space}); {self._kept()}: "
                "free space and run again to resume"
            )
        return UserError(
            f"saving a checkpoint in {self._directory} failed ({first_line(error)}); "
            f"{self._kept()}: run again to resume once the directory is writable"
        )

    def _kept(self) -> str:
        kept = self._manager.latest_step()
        return f"the last committed one (step {kept}) is kept" if kept else "none is committed yet"


# What tensorstore's errors say when a checkpoint's bytes are bad or missing (not when reading
# them failed): undecodable ("DATA_LOSS", zstd's "decompress", "checksum", "corrupt"), a file
# shorter than the index says ("OUT_OF_RANGE: Requested byte range ... is not valid"), a data
# file that is gone (read as empty: "Truncated Zstd-compressed stream"), an index file that is
# gone ("NOT_FOUND").
_CORRUPTION_MARKERS = (
    "DATA_LOSS",
    "decompress",
    "checksum",
    "corrupt",
    "OUT_OF_RANGE",
    "Truncated",
    "NOT_FOUND",
)
# orbax's own files of a checkpoint, cut short or gone: its JSON metadata does not parse, or
# its `meta/metadata` is not there (a committed checkpoint holds every one).
_CORRUPTION_TYPES = (json.JSONDecodeError, FileNotFoundError)


def _chain(e: BaseException) -> list[BaseException]:
    """`e` and the exceptions it was raised from."""
    chain = [e]
    while (e := e.__cause__ or e.__context__) is not None and e not in chain:
        chain.append(e)
    return chain


def _reason(e: BaseException) -> str:
    """The first line of the innermost error with a message: tensorstore's status, not its
    wrapper's "Encountered error while reading" and its spec dump."""
    messages = [first_line(x) for x in _chain(e) if str(x)]
    return (messages[-1] if messages else type(e).__name__).split(" See full TensorStore")[0]


def _is_corruption(e: BaseException) -> bool:
    """Whether restoring failed on the checkpoint's bytes (they cannot be decoded, or are not
    all there), as opposed to reading them (I/O, permissions, the network, memory)."""
    chain = _chain(e)
    if any(isinstance(x, _CORRUPTION_TYPES) for x in chain):
        return True
    text = " ".join(str(x) for x in chain).lower()
    return any(marker.lower() in text for marker in _CORRUPTION_MARKERS)


def _all_finite(tree: Any) -> bool:
    """Whether every float leaf of `tree` (arrays, possibly sharded) is finite everywhere."""
    leaves = [
        jnp.isfinite(x).all() for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return bool(jnp.all(jnp.stack(leaves))) if leaves else True
