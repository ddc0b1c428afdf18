"""Orbax checkpoints of the train state, behind one small class.

A step directory is written asynchronously and only counts once orbax has committed it, so a
process killed mid-save leaves the previous checkpoint as the latest one (its half-written
`<step>.orbax-checkpoint-tmp-*` directory is never restored). A checkpoint that cannot be read,
or a save that fails (a full disk), raises `UserError` with one line saying what to do.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from vit_locality.errors import UserError


class Checkpointer:
    """Saves and restores `{"state": pytree, "meta": json dict}` under `directory`."""

    def __init__(self, directory: str | pathlib.Path, keep: int):
        self._directory = pathlib.Path(directory)
        self._manager = ocp.CheckpointManager(
            self._directory.absolute(),
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
        try:
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
                force=True,
            )
        except OSError as e:
            raise self._save_failed(e) from e

    def restore(self, step: int, like: Any) -> tuple[Any, dict[str, Any]]:
        """Restores step `step` onto the shapes, dtypes and shardings of the pytree `like`."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except (OSError, ValueError, KeyError) as e:
            path = self._directory / str(step)
            reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise UserError(
                f"checkpoint {path} cannot be restored ({reason}); move it away (e.g. to "
                f"{path}.corrupt) to resume from the checkpoint before it"
            ) from e
        return restored.state, restored.meta

    def wait(self) -> None:
        """Blocks until every started save is committed to disk."""
        try:
            self._manager.wait_until_finished()
        except OSError as e:
            raise self._save_failed(e) from e

    def close(self) -> None:
        self.wait()
        self._manager.close()

    def _save_failed(self, error: OSError) -> UserError:
        kept = self._manager.latest_step()
        last = f"the last committed one (step {kept}) is kept" if kept else "none is committed yet"
        return UserError(
            f"saving a checkpoint in {self._directory} failed ({error.strerror or error}); "
            f"{last}: free space and run again to resume"
        )
