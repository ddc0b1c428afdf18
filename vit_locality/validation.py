"""Checks a config before any compute: each bad value raises a one-line `ConfigError` that names
the field, the value and what is allowed."""

from __future__ import annotations

import math
import os
import pathlib
from typing import Any

import ml_collections

from vit_locality.augment import erasing
from vit_locality.config_fields import flatten, get_field, with_saved_before
from vit_locality.data.datasets import DATASETS
from vit_locality.errors import ConfigError, UserError
from vit_locality.evaluators import OPTIONS as EVALUATOR_OPTIONS
from vit_locality.evaluators import REQUIRED as EVALUATOR_REQUIRED
from vit_locality.evaluators import evaluator_options
from vit_locality.models import DTYPES
from vit_locality.plan import SCHEDULES
from vit_locality.workdir import check_reachable, is_remote

# Fields (and everything under them) a run may change when it resumes: bookkeeping, the
# evaluators, where the data is read from. Any other difference would continue the run under
# another protocol or schedule.
RESUMABLE_CHANGES = (
    "data.source",
    "data.dir",
    "log_every_steps",
    "eval_every_steps",
    "ckpt_every_steps",
    "kept_checkpoints",
    "evals",
    "analysis.num_images",
    "analysis.every_epochs",
)


def _fail(field: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"config.{field}={value!r} is not allowed: {allowed}")


def _check_choice(config: ml_collections.ConfigDict, field: str, choices: tuple) -> None:
    value = get_field(config, field)
    if value not in choices:
        _fail(field, value, "one of " + ", ".join(repr(c) for c in choices))


def _check_positive(config: ml_collections.ConfigDict, field: str, integer: bool) -> None:
    value = get_field(config, field)
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not 0 < value < math.inf:
        _fail(field, value, f"a positive {'integer' if integer else 'finite number'}")


def _check_range(
    config: ml_collections.ConfigDict, field: str, low: float, high: float, high_open: bool
) -> None:
    value = get_field(config, field)
    inside = low <= value < high if high_open else low <= value <= high
    if not inside:
        _fail(field, value, f"a number in [{low}, {high}{')' if high_open else ']'}")


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Raises ConfigError on the first field whose value is not allowed; `num_devices` counts
    the devices of every process (so a batch that divides them divides the processes too)."""
    _check_choice(config, "dataset", tuple(DATASETS))
    _check_choice(config, "data.source", ("tfds", "files"))
    info = DATASETS[config.dataset]

    m = config.model
    for field in ("patch_size", "width", "depth", "num_heads", "mlp_dim"):
        _check_positive(config, f"model.{field}", integer=True)
    if info.image_size % m.patch_size:
        _fail(
            "model.patch_size",
            m.patch_size,
            f"a divisor of {config.dataset}'s image size {info.image_size}",
        )
    if m.width % m.num_heads:
        _fail("model.width", m.width, f"a multiple of model.num_heads={m.num_heads}")
    _check_choice(config, "model.pool", ("cls", "gap"))
    _check_choice(config, "model.dtype", tuple(DTYPES))

    _check_positive(config, "batch_size", integer=True)
    if config.batch_size % num_devices:
        _fail("batch_size", config.batch_size, f"a multiple of the device count {num_devices}")
    if config.total_steps is None:
        _check_positive(config, "total_epochs", integer=False)
    else:
        _check_positive(config, "total_steps", integer=True)
    _check_positive(config, "lr", integer=False)
    _check_range(config, "wd", 0.0, float("inf"), high_open=True)
    _check_range(config, "warmup_epochs", 0.0, float("inf"), high_open=True)
    _check_choice(config, "schedule", SCHEDULES)
    _check_positive(config, "grad_clip_norm", integer=False)

    _check_range(config, "aug.crop_padding", 0, info.image_size, high_open=True)
    if config.aug.autoaugment and not info.has_autoaugment_policy:
        _fail(
            "aug.autoaugment",
            True,
            f"False for {config.dataset} (no AutoAugment policy; use aug.color_jitter)",
        )
    _check_range(config, "aug.color_jitter", 0.0, 1.0, high_open=False)
    _check_range(config, "aug.random_erasing", 0.0, 1.0, high_open=False)
    _check_choice(config, "aug.random_erasing_mode", erasing.MODES)

    _check_range(config, "mix.prob", 0.0, 1.0, high_open=False)
    _check_range(config, "mix.switch_prob", 0.0, 1.0, high_open=False)
    for field in ("mix.cutmix_alpha", "mix.mixup_alpha"):
        _check_range(config, field, 0.0, float("inf"), high_open=True)
    if config.mix.prob > 0 and config.mix.cutmix_alpha == 0 and config.mix.mixup_alpha == 0:
        _fail("mix.prob", config.mix.prob, "0 when mix.cutmix_alpha and mix.mixup_alpha are 0")
    # Mixing partners are each device's shard reversed: an odd or 1-image shard pairs an image
    # with itself.
    per_device = config.batch_size // num_devices
    if config.mix.prob > 0 and (per_device < 2 or per_device % 2):
        _fail(
            "batch_size",
            config.batch_size,
            f"with mixing on (mix.prob > 0), an even number of at least 2 images per device: "
            f"a multiple of {2 * num_devices} for the {num_devices} devices",
        )
    _check_range(config, "label_smoothing", 0.0, 1.0, high_open=True)

    for field in ("log_every_steps", "ckpt_every_steps", "kept_checkpoints"):
        _check_positive(config, field, integer=True)
    _check_evaluators(config)


def _check_evaluators(config: ml_collections.ConfigDict) -> None:
    """`config.evals`: at least one evaluator, each type once, with that type's options (or the
    comma-separated string of a config written before evaluators were dicts)."""
    if isinstance(config.evals, str):
        names = [name.strip() for name in config.evals.split(",") if name.strip()]
        if not names or not set(names) <= set(EVALUATOR_OPTIONS) or len(set(names)) < len(names):
            allowed = ", ".join(EVALUATOR_OPTIONS)
            _fail("evals", config.evals, f"a comma-separated subset of {allowed}")
        if config.eval_every_steps is not None:
            _check_positive(config, "eval_every_steps", integer=True)
        _check_positive(config, "analysis.num_images", integer=True)
        _check_positive(config, "analysis.every_epochs", integer=False)
        return
    if not config.evals:
        _fail("evals", {}, f"at least one of {', '.join(EVALUATOR_OPTIONS)}")
    for name, options in config.evals.items():
        if not isinstance(options, ml_collections.ConfigDict):
            _fail(f"evals.{name}", options, "a dict of options (del config.evals.NAME skips one)")
    names_by_type: dict[str, str] = {}
    for name, options in evaluator_options(config).items():
        kind = options["type"]
        if not isinstance(kind, str) or kind not in EVALUATOR_OPTIONS:
            allowed = ", ".join(repr(t) for t in EVALUATOR_OPTIONS)
            _fail(f"evals.{name}.type", kind, f"one of {allowed} (the default is the name)")
        if kind in names_by_type:
            _fail(f"evals.{name}.type", kind, f"not the type of evals.{names_by_type[kind]} again")
        names_by_type[kind] = name
        for option in sorted(options.keys() - {"type", *EVALUATOR_OPTIONS[kind]}):
            allowed = ", ".join(EVALUATOR_OPTIONS[kind])
            _fail(f"evals.{name}.{option}", options[option], f"an option of {kind}: {allowed}")
        for option in EVALUATOR_REQUIRED.get(kind, ()):
            if options.get(option) is None:
                _fail(f"evals.{name}.{option}", None, f"set for a {kind} evaluator")
        for option in EVALUATOR_OPTIONS[kind]:
            if options.get(option) is not None:
                _check_positive(config, f"evals.{name}.{option}", integer=option != "every_epochs")


def check_resumable(saved: dict, config: ml_collections.ConfigDict, workdir: str) -> None:
    """Raises ConfigError naming every field, outside RESUMABLE_CHANGES, whose value differs
    from the workdir's saved config (fields the saved config predates are not compared, except
    those of `SAVED_BEFORE`, compared with the value such a run was trained with)."""
    old, new = with_saved_before(flatten(saved)), flatten(config)
    differing = [
        f"config.{field}={new[field]!r} differs from {old[field]!r}"
        for field in sorted(new)
        if field in old and not _resumable(field) and old[field] != new[field]
    ]
    if differing:
        raise ConfigError(
            f"{', '.join(differing)} in {workdir}/config.json; a run resumes with the same config "
            f"apart from {', '.join(RESUMABLE_CHANGES)}: use another --workdir or the saved values"
        )


def _resumable(field: str) -> bool:
    return any(field == name or field.startswith(name + ".") for name in RESUMABLE_CHANGES)


def check_workdir(workdir: str | pathlib.Path) -> None:
    """Raises UserError unless `workdir` is, or can be created as, a writable directory (for a
    gs:// workdir: unless the libraries that reach GCS are installed); checks without creating
    anything."""
    check_reachable(workdir)
    if is_remote(workdir):
        return
    existing = pathlib.Path(workdir).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"workdir {workdir}: {existing} is not a writable directory; use another --workdir"
        )
