"""What `config.evals` says, read without building an evaluator: each evaluator type's options,
the key that marks its row in metrics.jsonl, its period in steps. The run directory (whether a
run is finished), validation, the report and the evaluators themselves read it; it imports none
of them (`vit_locality.evaluators` holds the evaluators).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vit_locality.config_fields import get_field

PERIODS = ("every_steps", "every_epochs")
# Each evaluator type's options, those without a default, and the key that marks its row in
# metrics.jsonl.
OPTIONS = {"classification": PERIODS, "locality": (*PERIODS, "num_images")}
REQUIRED = {"locality": ("num_images",)}
ROW_KEYS = {"classification": "val/prec@1", "locality": "locality/min_mad_first_layer"}
# The fields that hold the default evaluators' options under short names (the same fields by
# reference in configs/common.py; the only place of those options in configs saved before
# evaluators were dicts): type -> {option: field}.
SHORT_NAMES = {
    "classification": {"every_steps": "eval_every_steps"},
    "locality": {"num_images": "analysis.num_images", "every_epochs": "analysis.every_epochs"},
}


def evaluator_options(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`config.evals` as {name: options with `type`}, for a ConfigDict or a saved config.json;
    an option set to None is left out (unset).

    A config saved before evaluators were dicts holds a comma-separated string of types
    ("classification,locality") whose options were the fields `eval_every_steps` and
    `analysis.*`, and one saved before `evals` existed evaluated classification only: both read
    as the same evaluators."""
    evals = config.get("evals", "classification")
    if isinstance(evals, str):
        names = [name.strip() for name in evals.split(",") if name.strip()]
        evals = {
            name: {
                option: get_field(config, field, None)
                for option, field in SHORT_NAMES.get(name, {}).items()
            }
            for name in names
        }
    return {
        name: {"type": name, **{k: v for k, v in dict(options).items() if v is not None}}
        for name, options in evals.items()
    }


def locality_num_images(config: Mapping[str, Any]) -> int:
    """How many test images the run's locality evaluator analyses (`analysis.num_images` for a
    run without one)."""
    for options in evaluator_options(config).values():
        if options["type"] == "locality":
            return options["num_images"]
    return config["analysis"]["num_images"]


def period_steps(options: Mapping[str, Any], steps_per_epoch: int) -> int:
    """An evaluator's period in steps: `every_steps` when set, else `every_epochs` epochs
    (at least one step), else one epoch."""
    if options.get("every_steps") is not None:
        return options["every_steps"]
    if options.get("every_epochs") is not None:
        return max(1, round(options["every_epochs"] * steps_per_epoch))
    return steps_per_epoch
