"""What the train loop evaluates on the test split, chosen by `config.evals`, one module per
evaluator as in big_vision (`vit_locality/evaluators/<name>.py`), each with its own period and
all of them at the final step:

    classification  top-1 (and top-5 where classes > 10) accuracy in % and the mean loss over
                    every test example; every `eval_every_steps` (default: once per epoch)
    locality        MAD and entropy of every head on the first `analysis.num_images` test images:
                    locality.json, plots/, `locality/...` scalars; every `analysis.every_epochs`

An evaluator module has `build(context: Context) -> Evaluator`, which reads its own options
from the config. An evaluator has `name`,
`every_steps` and `run(params, step) -> (scalars, line)`: the scalars go to metrics.jsonl and
TensorBoard, the line to the console (process 0). Every process calls `run` (the passes are
collectives over the mesh). This module imports no evaluator: naming them costs nothing.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Protocol

import ml_collections
import numpy as np
from jax.sharding import Mesh

from vit_locality.plan import StepPlan
from vit_locality.predict import Predictor
from vit_locality.workdir import RunDir

NAMES = ("classification", "locality")


class Evaluator(Protocol):
    name: str
    every_steps: int

    def run(self, params: Any, step: int) -> tuple[dict[str, float], str]: ...


def evaluator_names(config: ml_collections.ConfigDict) -> list[str]:
    """`config.evals` ("classification,locality") as a list of names."""
    return [name.strip() for name in config.evals.split(",") if name.strip()]


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
    """The evaluators `config.evals` names, in that order."""
    return [
        importlib.import_module(f"vit_locality.evaluators.{name}").build(context)
        for name in evaluator_names(context.config)
    ]
