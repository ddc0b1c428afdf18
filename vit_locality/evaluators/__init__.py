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
checking them costs nothing; what `config.evals` says (options, periods, row keys) is
`vit_locality.evaluator_options`, which the run directory and validation read.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any, Protocol

from vit_locality.evaluator_options import evaluator_options

if TYPE_CHECKING:  # what the evaluators are built from: no import of the model
    import ml_collections
    import numpy as np
    from jax.sharding import Mesh

    from vit_locality.plan import StepPlan
    from vit_locality.predict import Predictor
    from vit_locality.workdir import RunDir


class Evaluator(Protocol):
    name: str
    every_steps: int

    def run(self, params: Any, step: int) -> tuple[dict[str, float], str]: ...


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
