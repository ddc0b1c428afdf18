"""Attention locality of a trained checkpoint: `python -m vit_locality.analyze --workdir=DIR
[--step=N] [--num_images=N] [--data_dir=PATH]`, or of another library's checkpoint:
`python -m vit_locality.analyze --checkpoint=PATH [--format=timm|big_vision|hf|clip|torchvision]
--images=DIR --out=DIR` (see `external/analyze.py`; preprocessing flags override the checkpoint's).

Reads `DIR/config.json`, restores the parameters of checkpoint `--step` (default: the latest
readable one; each unreadable newer one is named in one line on stderr) onto this machine's
devices (the device count may differ from training), analyses the first `--num_images` test
images (default: as many as the run's locality evaluator) with the jitted locality pass, writes
`DIR/locality.json`, `DIR/plots/{mad_per_head,entropy_per_head,attention_maps,
training_curves}.png` and prints a per-layer table. A directory without a run, a step that was not
saved or cannot be read, or data that cannot be read print one `error: ...` line and exit with
status 2, before any compute and without changing anything.
"""

from __future__ import annotations

import pathlib
from typing import Any

from absl import app, flags, logging

from vit_locality.analysis.results import analyze_and_write, format_table, write_training_curves
from vit_locality.cli import fail, parse_flags
from vit_locality.data.sources import load_split
from vit_locality.errors import UserError
from vit_locality.evaluator_options import locality_num_images
from vit_locality.external.analyze import analyze_checkpoint
from vit_locality.parallel import sharding
from vit_locality.predict import Predictor
from vit_locality.restore import restore_params
from vit_locality.workdir import RunDir

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (holds config.json, checkpoints/).")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint",
    None,
    "A timm, Hugging Face or OpenCLIP folder, a bare timm .safetensors / .pth (with --arch), an "
    "OpenAI CLIP / OpenCLIP or torchvision state dict, a .npz, or a run directory of this "
    "project.",
)
flags.DEFINE_string(
    "arch", None, "With a bare timm state dict: timm's model name, e.g. vit_base_patch16_224."
)
flags.DEFINE_integer(
    "num_heads",
    None,
    "With a bare timm, torchvision or CLIP state dict: its heads (default: from --arch's name, "
    "or the width).",
)
flags.DEFINE_string(
    "format", None, "timm, big_vision, hf, clip, torchvision or project (default: detected)."
)
_IMAGES = flags.DEFINE_string("images", None, "With --checkpoint: a folder of JPEG/PNG images.")
flags.DEFINE_string(
    "dataset", None, "With --checkpoint, instead of --images: this dataset's test split."
)
_OUT = flags.DEFINE_string("out", None, "With --checkpoint: where locality.json and plots/ go.")
flags.DEFINE_string(
    "gelu", None, "With --checkpoint: exact, tanh or quick (default: the format's)."
)
flags.DEFINE_integer(
    "image_size",
    None,
    "With --checkpoint: analyse at this square size (position embedding resampled).",
)
flags.DEFINE_integer("resize", None, "With --checkpoint: shorter side before the crop.")
flags.DEFINE_string("interpolation", None, "With --checkpoint: resize filter.")
_MEAN = flags.DEFINE_list("mean", None, "With --checkpoint: per-channel mean in [0, 1] units.")
_STD = flags.DEFINE_list("std", None, "With --checkpoint: per-channel std in [0, 1] units.")
flags.DEFINE_integer("batch_size", 32, "With --checkpoint: images per pass.")
flags.DEFINE_string(
    "rollout", "mean", "With --checkpoint: head fusion of attention rollout (mean, max, min)."
)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to analyse (default: the latest).")
_NUM_IMAGES = flags.DEFINE_integer(
    "num_images",
    None,
    "First N test images to average over (default: the run's locality evaluator's).",
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir",
    None,
    "Override config.data.dir (the run was trained where data lived elsewhere); with --dataset, "
    "the dataset's official files (default: tfds).",
)
flags.register_multi_flags_validator(
    ["workdir", "checkpoint"],
    lambda f: f["workdir"] is not None or f["checkpoint"] is not None,
    message="--workdir is required",
)
flags.register_multi_flags_validator(
    ["workdir", "checkpoint"],
    lambda f: f["workdir"] is None or f["checkpoint"] is None,
    message="--workdir and --checkpoint are not allowed together: one of them",
)
flags.register_multi_flags_validator(
    ["checkpoint", "images", "dataset", "out"],
    lambda f: (
        f["checkpoint"] is None
        or ((f["images"] is None) != (f["dataset"] is None) and f["out"] is not None)
    ),
    message="--checkpoint needs --out=DIR and one of --images=DIR, --dataset=NAME",
)


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
      num_images: how many of the first test images (default: the run's locality evaluator's;
        at most the size of the test split).
      data_dir: replaces `config.data.dir` when given.

    Returns:
      The `locality.json` record written.

    Raises:
      UserError: no run or no checkpoint in `workdir`, `step` not saved or not readable (nor any
        checkpoint when `step` is None), `num_images` < 1, or the data cannot be loaded; raised
        before anything is computed or written.
    """
    if num_images is not None and num_images < 1:
        raise UserError(f"--num_images={num_images} is not allowed: a positive integer")
    config, model, params, step = restore_params(workdir, step)
    if data_dir is not None:
        config.data.dir = data_dir
    images, _ = load_split(config, "test")
    images = images[: num_images or locality_num_images(config)]

    run_dir = RunDir(workdir)
    record = analyze_and_write(
        run_dir,
        Predictor.for_dataset(model, config.dataset),
        params,
        images,
        step=step,
        dataset=config.dataset,
        mesh=sharding.make_mesh(),
        batch_size=min(config.batch_size, len(images)),
    )
    write_training_curves(run_dir)
    return record


def _numbers(name: str, values: list[str] | None) -> tuple[float, ...] | None:
    if values is None:
        return None
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise UserError(
            f"--{name}={','.join(values)!r} is not allowed: a number per channel, e.g. 0.5,0.5,0.5"
        ) from None


# Flags analyze_checkpoint takes by their own names.
_CHECKPOINT_OPTIONS = (
    "dataset",
    "data_dir",
    "format",
    "gelu",
    "arch",
    "num_heads",
    "num_images",
    "batch_size",
    "rollout",
    "image_size",
    "resize",
    "interpolation",
)


def _analyze_checkpoint() -> dict[str, Any]:
    return analyze_checkpoint(
        _CHECKPOINT.value,
        _IMAGES.value,
        _OUT.value,
        **{name: flags.FLAGS[name].value for name in _CHECKPOINT_OPTIONS},
        mean=_numbers("mean", _MEAN.value),
        std=_numbers("std", _STD.value),
    )


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs at INFO
    try:
        if _CHECKPOINT.value is not None:
            record = _analyze_checkpoint()
        else:
            record = analyze_run(
                _WORKDIR.value,
                step=_STEP.value,
                num_images=_NUM_IMAGES.value,
                data_dir=_DATA_DIR.value,
            )
    except UserError as e:
        fail(e)
    print(format_table(record))
    run_dir = RunDir(_WORKDIR.value or _OUT.value)
    print(f"wrote {run_dir.locality_file} and {run_dir.plots_dir}/", flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
