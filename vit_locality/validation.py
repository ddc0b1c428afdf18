"""Checks a config before any compute: each bad value raises a one-line `ConfigError` that names
the field, the value and what is allowed."""

from __future__ import annotations

import os
import pathlib

import ml_collections

from vit_locality.augment import registry
from vit_locality.config_checks import check_choice, check_positive, check_range, fail
from vit_locality.config_fields import flatten, with_saved_before
from vit_locality.datasets import DATASETS
from vit_locality.errors import ConfigError, UserError
from vit_locality.evaluator_options import OPTIONS as EVALUATOR_OPTIONS
from vit_locality.evaluator_options import REQUIRED as EVALUATOR_REQUIRED
from vit_locality.evaluator_options import evaluator_options
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


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Raises ConfigError on the first field whose value is not allowed; `num_devices` counts
    the devices of every process (so a batch that divides them divides the processes too)."""
    check_choice(config, "dataset", tuple(DATASETS))
    check_choice(config, "data.source", ("tfds", "files"))
    info = DATASETS[config.dataset]

    m = config.model
    for field in ("patch_size", "width", "depth", "num_heads", "mlp_dim"):
        check_positive(config, f"model.{field}", integer=True)
    if info.image_size % m.patch_size:
        fail(
            "model.patch_size",
            m.patch_size,
            f"a divisor of {config.dataset}'s image size {info.image_size}",
        )
    if m.width % m.num_heads:
        fail("model.width", m.width, f"a multiple of model.num_heads={m.num_heads}")
    check_choice(config, "model.pool", ("cls", "gap"))
    check_choice(config, "model.dtype", tuple(DTYPES))

    check_positive(config, "batch_size", integer=True)
    if config.batch_size % num_devices:
        fail("batch_size", config.batch_size, f"a multiple of the device count {num_devices}")
    if config.total_steps is None:
        check_positive(config, "total_epochs", integer=False)
    else:
        check_positive(config, "total_steps", integer=True)
    check_positive(config, "lr", integer=False)
    check_range(config, "wd", 0.0, float("inf"), high_open=True)
    check_range(config, "warmup_epochs", 0.0, float("inf"), high_open=True)
    check_choice(config, "schedule", SCHEDULES)
    check_positive(config, "grad_clip_norm", integer=False)

    registry.check_all(config, registry.CheckContext(info, num_devices))

    for field in ("log_every_steps", "ckpt_every_steps", "kept_checkpoints"):
        check_positive(config, field, integer=True)
    _check_evaluators(config)


def _check_evaluators(config: ml_collections.ConfigDict) -> None:
    """`config.evals`: at least one evaluator, each type once, with that type's options (or the
    comma-separated string of a config written before evaluators were dicts)."""
    if isinstance(config.evals, str):
        names = [name.strip() for name in config.evals.split(",") if name.strip()]
        if not names or not set(names) <= set(EVALUATOR_OPTIONS) or len(set(names)) < len(names):
            allowed = ", ".join(EVALUATOR_OPTIONS)
            fail("evals", config.evals, f"a comma-separated subset of {allowed}")
        if config.eval_every_steps is not None:
            check_positive(config, "eval_every_steps", integer=True)
        check_positive(config, "analysis.num_images", integer=True)
        check_positive(config, "analysis.every_epochs", integer=False)
        return
    if not config.evals:
        fail("evals", {}, f"at least one of {', '.join(EVALUATOR_OPTIONS)}")
    for name, options in config.evals.items():
        if not isinstance(options, ml_collections.ConfigDict):
            fail(f"evals.{name}", options, "a dict of options (del config.evals.NAME skips one)")
    names_by_type: dict[str, str] = {}
    for name, options in evaluator_options(config).items():
        kind = options["type"]
        if not isinstance(kind, str) or kind not in EVALUATOR_OPTIONS:
            allowed = ", ".join(repr(t) for t in EVALUATOR_OPTIONS)
            fail(f"evals.{name}.type", kind, f"one of {allowed} (the default is the name)")
        if kind in names_by_type:
            fail(f"evals.{name}.type", kind, f"not the type of evals.{names_by_type[kind]} again")
        names_by_type[kind] = name
        for option in sorted(options.keys() - {"type", *EVALUATOR_OPTIONS[kind]}):
            allowed = ", ".join(EVALUATOR_OPTIONS[kind])
            fail(f"evals.{name}.{option}", options[option], f"an option of {kind}: {allowed}")
        for option in EVALUATOR_REQUIRED.get(kind, ()):
            if options.get(option) is None:
                fail(f"evals.{name}.{option}", None, f"set for a {kind} evaluator")
        for option in EVALUATOR_OPTIONS[kind]:
            if options.get(option) is not None:
                check_positive(config, f"evals.{name}.{option}", integer=option != "every_epochs")


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
