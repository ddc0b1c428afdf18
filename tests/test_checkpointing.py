"""Which restore failures mean a corrupt checkpoint (set aside, the one before it used) and which
mean the checkpoint could not be read this time (one line, nothing moved)."""

import jax.numpy as jnp
import pytest

from vit_locality.errors import UserError
from vit_locality.workdir import checkpointing


def failure(inner: str) -> Exception:
    """tensorstore's shape: a bare Exception raised from a ValueError holding the status."""
    try:
        try:
            raise ValueError(inner)
        except ValueError as cause:
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
    ],
)
def test_undecodable_bytes_are_an_unreadable_checkpoint(saved, monkeypatch, inner):
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
