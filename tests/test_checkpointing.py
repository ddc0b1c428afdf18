"""A replicated state is saved without compiling anything; which restore failures mean a
corrupt checkpoint (set aside, the one before it used) and which mean the checkpoint could not be
read this time (one line, nothing moved); a restore that fails part-way leaves nothing behind for
the garbage collector to print."""

import asyncio
import gc
import json
import logging
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from orbax.checkpoint._src.serialization import serialization

from vit_locality.errors import UserError
from vit_locality.workdir import checkpointing

from .helpers import logged_compiles


def failure(inner: str | Exception) -> Exception:
    """tensorstore's shape: a bare Exception raised from a ValueError holding the status (or
    from `inner` itself when it is an exception)."""
    try:
        try:
            raise inner if isinstance(inner, Exception) else ValueError(inner)
        except Exception as cause:
            raise Exception(
                "Encountered error while reading array index: (slice(0, 8, 1),)."
            ) from cause
    except Exception as e:
        return e


def raising(error: Exception):
    def restore(*args, **kwargs):
        raise error

    return restore


@pytest.fixture
def saved(tmp_path):
    ckpt = checkpointing.Checkpointer(tmp_path / "checkpoints", 3)
    state = {"w": jnp.arange(8.0)}
    ckpt.save(4, state, {"step": 4})
    ckpt.wait()
    yield ckpt, state
    ckpt.close()


def test_a_replicated_state_is_saved_from_one_replica_without_compiling(tmp_path):
    """The train state is replicated over the 8 devices: its first save compiles nothing (orbax's
    replica-parallel default would slice each leaf once per device, a program each) and restores
    equal."""
    replicated = jax.NamedSharding(jax.make_mesh((8,), ("data",)), jax.P())
    state = {
        # Shapes no other test slices, so no in-memory cache hit can hide a compilation.
        "kernel": jax.device_put(np.arange(72.0, dtype=np.float32).reshape(8, 9), replicated),
        "bias": jax.device_put(np.ones(40, np.float32), replicated),
    }
    ckpt = checkpointing.Checkpointer(tmp_path / "checkpoints", 3)
    try:
        with logged_compiles() as messages:
            ckpt.save(1, state, {"step": 1})
            ckpt.wait()
        restored, meta = ckpt.restore(1, state)
    finally:
        ckpt.close()
    assert [m for m in messages if "compil" in m.lower()] == []
    assert meta == {"step": 1}
    for name, array in state.items():
        np.testing.assert_array_equal(restored[name], array)
        assert restored[name].sharding.is_equivalent_to(replicated, array.ndim)


def restore_error(saved, monkeypatch, inner):
    """The UserError restoring step 4 raises when orbax fails with tensorstore's `inner`."""
    ckpt, state = saved
    monkeypatch.setattr(ckpt._manager, "restore", raising(failure(inner)))
    with pytest.raises(UserError) as error:
        ckpt.restore(4, state)
    return ckpt, error.value


@pytest.mark.parametrize(
    "inner",
    [
        'FAILED_PRECONDITION: Error reading "w/0": ZSTD_decompressStream() failed: Unknown frame',
        "DATA_LOSS: Error reading manifest: checksum mismatch",
        # A data file cut short, then one that is gone (tensorstore reads it as empty).
        'OUT_OF_RANGE: Error reading "w/0": Requested byte range [4439, 5935) is not valid for '
        "value of size 4096",
        'FAILED_PRECONDITION: Error reading "w/0": Truncated Zstd-compressed stream; at byte 0',
        'NOT_FOUND: Error opening "zarr" driver: Error reading "step/.zarray"',  # the index file
    ],
)
def test_undecodable_bytes_are_an_unreadable_checkpoint(saved, monkeypatch, inner):
    ckpt, error = restore_error(saved, monkeypatch, inner)
    assert isinstance(error, checkpointing.UnreadableCheckpoint)
    assert str(error) == f"checkpoint {ckpt._directory / '4'} cannot be restored ({inner})"


@pytest.mark.parametrize(
    "inner",
    [
        json.JSONDecodeError("Unterminated string starting at", '{"step": "4', 9),  # cut short
        FileNotFoundError("File checkpoints/4/meta/metadata not found."),  # orbax's words
    ],
)
def test_orbax_metadata_cut_short_or_gone_is_an_unreadable_checkpoint(saved, monkeypatch, inner):
    ckpt, error = restore_error(saved, monkeypatch, inner)
    assert isinstance(error, checkpointing.UnreadableCheckpoint)
    assert str(error) == f"checkpoint {ckpt._directory / '4'} cannot be restored ({inner})"


@pytest.mark.parametrize(
    "inner",
    [
        "UNAVAILABLE: Error reading gs://bucket/run/checkpoints/4: HTTP 503",
        "PERMISSION_DENIED: Error reading gs://bucket/run/checkpoints/4: HTTP 403",
        "RESOURCE_EXHAUSTED: Out of memory allocating 1073741824 bytes",
    ],
)
def test_a_checkpoint_that_could_not_be_read_this_time_is_left_as_it_is(saved, monkeypatch, inner):
    ckpt, error = restore_error(saved, monkeypatch, inner)
    assert not isinstance(error, checkpointing.UnreadableCheckpoint)
    assert str(error) == (
        f"checkpoint {ckpt._directory / '4'} cannot be restored ({inner}); it is left as it is: "
        "run again once that is fixed"
    )
    assert (ckpt._directory / "4").is_dir()


def test_a_step_set_aside_twice_keeps_both_copies(saved):
    ckpt, state = saved
    first = ckpt.set_aside(4)
    ckpt.reload()
    ckpt.save(4, state, {"step": 4})
    ckpt.wait()
    second = ckpt.set_aside(4)
    assert (first.name, second.name) == ("4.corrupt", "4.corrupt.1")
    assert first.is_dir() and second.is_dir() and not (ckpt._directory / "4").exists()


def test_a_restore_that_fails_part_way_finishes_its_other_reads(saved, monkeypatch):
    """One array's read fails at once while the others are still in flight (they yield to the
    event loop a hundred times first): orbax's gather returns at the failure, and its loop would
    be closed on the other reads. They run to their end instead, so the garbage collector finds
    no abandoned `_read_array_index_and_device_put` coroutine to close (each printed "Exception
    ignored in: <coroutine object ...>" and a traceback) and no task left pending."""
    ckpt, _ = saved
    state = {name: jnp.arange(8.0) + i for i, name in enumerate("abcdefgh")}
    ckpt.save(6, state, {"step": 6})
    ckpt.wait()
    real_read, reads, finished = serialization._read_shard, [], []

    async def read(**kwargs):
        reads.append(kwargs)
        if len(reads) == 1:
            raise ValueError("DATA_LOSS: simulated")
        for _ in range(100):
            await asyncio.sleep(0)
        shard = await real_read(**kwargs)
        finished.append(shard)
        return shard

    unraisable = []
    monkeypatch.setattr(serialization, "_read_shard", read)
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(checkpointing.UnreadableCheckpoint, match=r"\(DATA_LOSS: simulated\)$"):
        ckpt.restore(6, state)
    gc.collect()
    assert unraisable == []
    assert len(reads) == len(state) and len(finished) == len(state) - 1


ORBAX_MANAGER = "/site-packages/orbax/checkpoint/checkpoint_manager.py"


@pytest.mark.parametrize(
    "path, message, dropped",
    [
        (ORBAX_MANAGER, "Waiting for previous save to complete took 1.032551 seconds. If this "
         "number is high, consider checkpointing less frequently.", True),
        (ORBAX_MANAGER, "Checkpoint directory is corrupt", False),
        (__file__, "Waiting for previous save to complete took 2 seconds", False),
    ],
)  # fmt: skip
def test_the_hint_that_a_save_waited_for_the_one_before_is_dropped(path, message, dropped):
    """A loaded machine made a resumed run print orbax's hint among its lines; orbax's other
    warnings and anyone else's stay."""
    record = logging.getLogger("absl").makeRecord(
        "absl", logging.WARNING, path, 1466, message, (), None
    )
    assert bool(checkpointing._DropSaveWaitHint().filter(record)) is not dropped
