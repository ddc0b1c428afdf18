"""The parameters of a saved checkpoint of one of this project's runs, for analysis."""

from __future__ import annotations

import pathlib
import sys
from typing import Any

import ml_collections

from vit_locality import train_state
from vit_locality.datasets import DATASETS
from vit_locality.errors import UserError
from vit_locality.models import ViT, build_model
from vit_locality.parallel import sharding
from vit_locality.workdir import RunDir, checkpointing


def restore_params(
    workdir: str | pathlib.Path, step: int | None = None
) -> tuple[ml_collections.ConfigDict, ViT, Any, int]:
    """`(config, model, params, step)` of checkpoint `step` (default: the latest readable one;
    each unreadable newer one is named in one line on stderr) of the run in `workdir`, restored
    replicated onto this machine's devices (any device count).

    Raises:
      UserError: no run or no checkpoint in `workdir`, an unknown dataset, or `step` not saved
        (raised before anything is restored); UnreadableCheckpoint when `step`, or every saved
        checkpoint, cannot be read.
    """
    run_dir = RunDir(workdir)
    config = ml_collections.ConfigDict(run_dir.require_config())
    if config.get("dataset") not in DATASETS:
        raise UserError(f"{run_dir.config_file} names an unknown dataset {config.get('dataset')!r}")
    if not run_dir.checkpoints_dir.is_dir():
        raise UserError(f"{workdir} has no checkpoints/ directory: nothing was saved yet")
    ckpt = checkpointing.Checkpointer(run_dir.checkpoints_dir, config.kept_checkpoints)
    try:
        saved = ckpt.all_steps()
        if not saved:
            raise UserError(f"{run_dir.checkpoints_dir} holds no committed checkpoint yet")
        if step is not None and step not in saved:
            raise UserError(
                f"--step={step} is not a saved checkpoint of {workdir}; saved steps: "
                + ", ".join(str(s) for s in sorted(saved))
            )
        model = build_model(config)
        mesh = sharding.make_mesh()
        _, tx = train_state.optimizer(config)  # the optimizer state's structure only
        like = train_state.abstract_state(config, model, tx, mesh)
        wanted = sorted(saved, reverse=True) if step is None else [step]
        state, step = _restore_first_readable(ckpt, like, wanted)
    finally:
        ckpt.close()
    return config, model, state.params, step


def _restore_first_readable(
    ckpt: checkpointing.Checkpointer, like: Any, steps: list[int]
) -> tuple[Any, int]:
    """The state of the first of `steps` that restores, and its step. Each unreadable one but
    the last is named in one line on stderr before the next is tried; the last one's
    UnreadableCheckpoint is raised."""
    for candidate in steps[:-1]:
        try:
            return ckpt.restore(candidate, like)[0], candidate
        except checkpointing.UnreadableCheckpoint as e:
            print(f"warning: {e}; analysing the one before it", file=sys.stderr, flush=True)
    return ckpt.restore(steps[-1], like)[0], steps[-1]
