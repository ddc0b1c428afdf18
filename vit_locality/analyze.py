"""Attention locality of a trained checkpoint: `python -m vit_locality.analyze --workdir=DIR
[--step=N] [--num_images=N] [--data_dir=PATH]`.

Reads `DIR/config.json`, restores the parameters of checkpoint `--step` (default: the latest
readable one; each unreadable newer one is named in one line on stderr) onto this machine's
devices (the device count may differ from training), analyses the first `--num_images` test
images (default `config.analysis.num_images`) with the jitted locality pass, writes
`DIR/locality.json`, `DIR/plots/{mad_per_head,entropy_per_head,attention_maps,
training_curves}.png` and prints a per-layer table. A directory without a run, a step that was not
saved or cannot be read, or data that cannot be read print one `error: ...` line and exit with
status 2, before any compute and without changing anything.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any

import ml_collections
from absl import app, flags, logging

from vit_locality import checkpointing, sharding, train_state
from vit_locality.analysis.results import analyze_and_write, format_table, write_training_curves
from vit_locality.cli import parse_flags
from vit_locality.data.datasets import DATASETS
from vit_locality.data.sources import load_split
from vit_locality.errors import UserError
from vit_locality.models import build_model
from vit_locality.predict import Predictor
from vit_locality.workdir import RunDir

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (holds config.json, checkpoints/).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to analyse (default: the latest).")
_NUM_IMAGES = flags.DEFINE_integer(
    "num_images", None, "First N test images to average over (default config.analysis.num_images)."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Override config.data.dir (the run was trained where data lived elsewhere)."
)
flags.mark_flags_as_required(["workdir"])


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


def analyze_run(
    workdir: str | pathlib.Path,
    *,
    step: int | None = None,
    num_images: int | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Analyses checkpoint `step` of the run in `workdir`; writes `locality.json` and the plots.

    Args:
      workdir: the run directory.
      step: the checkpoint step (default: the latest one that can be restored).
      num_images: how many of the first test images (default `config.analysis.num_images`;
        at most the size of the test split).
      data_dir: replaces `config.data.dir` when given.

    Returns:
      The `locality.json` record written.

    Raises:
      UserError: no run or no checkpoint in `workdir`, `step` not saved or not readable (nor any
        checkpoint when `step` is None), `num_images` < 1, or the data cannot be loaded; raised
        before anything is computed or written.
    """
    run_dir = RunDir(workdir)
    config = ml_collections.ConfigDict(run_dir.require_config())
    if config.get("dataset") not in DATASETS:
        raise UserError(f"{run_dir.config_file} names an unknown dataset {config.get('dataset')!r}")
    if num_images is not None and num_images < 1:
        raise UserError(f"--num_images={num_images} is not allowed: a positive integer")
    if not run_dir.checkpoints_dir.is_dir():
        raise UserError(f"{workdir} has no checkpoints/ directory: nothing was saved yet")
    if data_dir is not None:
        config.data.dir = data_dir

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
        images, _ = load_split(config, "test")
        images = images[: num_images or config.analysis.num_images]

        model = build_model(config.model, DATASETS[config.dataset].num_classes)
        mesh = sharding.make_mesh()
        _, tx = train_state.optimizer(config)  # the optimizer state's structure only
        like = train_state.abstract_state(config, model, tx, mesh)
        wanted = sorted(saved, reverse=True) if step is None else [step]
        state, step = _restore_first_readable(ckpt, like, wanted)
    finally:
        ckpt.close()

    record = analyze_and_write(
        run_dir,
        Predictor.for_dataset(model, config.dataset),
        state.params,
        images,
        step=step,
        dataset=config.dataset,
        mesh=mesh,
        batch_size=min(config.batch_size, len(images)),
    )
    write_training_curves(run_dir)
    return record


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs at INFO
    try:
        record = analyze_run(
            _WORKDIR.value, step=_STEP.value, num_images=_NUM_IMAGES.value, data_dir=_DATA_DIR.value
        )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(format_table(record))
    run_dir = RunDir(_WORKDIR.value)
    print(f"wrote {run_dir.locality_file} and {run_dir.plots_dir}/", flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
