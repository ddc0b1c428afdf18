"""What the train loop evaluates on the test split, configured as big_vision does: each entry of
`config.evals` is a dict of options for one evaluator module, `vit_locality/evaluators/<type>.py`
(`type` defaults to the entry's name). Every evaluator runs at its period and at the final step:

    classification  top-1 (and top-5 where classes > 10) accuracy in % and the mean loss over
                    every test example: `val/...` scalars
    locality        MAD and entropy of every head on the first `num_images` test images:
                    locality.json, plots/, `locality/...` scalars (docs/locality.md)

Options every evaluator takes: `every_steps` (when set) or `every_epochs`; without either, once
per epoch. An evaluator module has `build(context, options) -> Evaluator`; an evaluator has
`name` (its type), `every_steps` and `run(params, step) -> (scalars, line)`: the scalars go to
metrics.jsonl and TensorBoard, the line to the console (process 0). Every process calls `run`
(the passes are collectives over the mesh). This module imports no evaluator: naming and
checking them costs nothing.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from vit_locality.config_fields import get_field

if TYPE_CHECKING:  # the workdir reads evaluator_options: no import of it, or of the model
    import ml_collections
    import numpy as np
    from jax.sharding import Mesh

    from vit_locality.plan import StepPlan
    from vit_locality.predict import Predictor
    from vit_locality.workdir import RunDir

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


class Evaluator(Protocol):
    name: str
    every_steps: int

    def run(self, params: Any, step: int) -> tuple[dict[str, float], str]: ...


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


@dataclasses.dataclass(frozen=True)
class Context:
    """What an evaluator is built from: the run's config and plan, the model behind its
    normalization, the test split (uint8 images `[N, H, W, C]`, int labels `[N]`), the mesh and
    the run directory."""

    config: ml_collections.ConfigDict
    plan: StepPlan
    predictor: Predictor
    test_images: np.ndarray
    test_labels: np.ndarray
    mesh: Mesh
    run_dir: RunDir


def build_evaluators(context: Context) -> list[Evaluator]:
    """The evaluators of `config.evals`, by name (a ConfigDict keeps its keys sorted)."""
    return [
        importlib.import_module(f"vit_locality.evaluators.{options['type']}").build(
            context, options
        )
        for options in evaluator_options(context.config).values()
    ]
