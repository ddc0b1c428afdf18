"""What the train loop evaluates on the test split, chosen by `config.evals` (as big_vision's
`config.evals`), each evaluator with its own period and all of them at the final step:

    classification  top-1 (and top-5 where classes > 10) accuracy in % and the mean loss over
                    every test example; every `eval_every_steps` (default: once per epoch)
    locality        MAD and entropy of every head on the first `analysis.num_images` test images:
                    locality.json, plots/, `locality/...` scalars; every `analysis.every_epochs`

An evaluator has `name`, `every_steps` and `run(params, step) -> (scalars, line)`: the scalars
go to metrics.jsonl and TensorBoard, the line to the console (process 0). Every process calls
`run` (the passes are collectives over the mesh).
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from vit_locality import sharding
from vit_locality.analysis.results import (
    analyze_and_write,
    locality_scalars,
    write_training_curves,
)
from vit_locality.data.eval_input import eval_batches
from vit_locality.plan import StepPlan
from vit_locality.predict import Predictor
from vit_locality.step import make_eval_step
from vit_locality.workdir import RunDir

NAMES = ("classification", "locality")


class Evaluator(Protocol):
    name: str
    every_steps: int

    def run(self, params: Any, step: int) -> tuple[dict[str, float], str]: ...


class Classification:
    """Accuracy and loss over every test example (the last batch padded and masked)."""

    name = "classification"

    def __init__(
        self,
        predictor: Predictor,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        num_classes: int,
        batch_size: int,
        mesh: Mesh,
        every_steps: int,
    ):
        self.every_steps = every_steps
        self._images, self._labels = images, labels
        self._num_classes, self._batch_size, self._mesh = num_classes, batch_size, mesh
        self._eval_step = jax.jit(
            make_eval_step(predictor, num_classes), out_shardings=sharding.replicated(mesh)
        )

    def run(self, params: Any, step: int) -> tuple[dict[str, float], str]:
        totals = None
        for batch in eval_batches(
            self._images,
            self._labels,
            global_batch_size=self._batch_size,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        ):
            global_batch = sharding.to_global(batch, sharding.batch_sharded(self._mesh))
            sums = self._eval_step(params, global_batch)
            totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
        totals = jax.device_get(totals)
        count = float(totals["count"])
        scalars = {"val/prec@1": 100.0 * float(totals["correct@1"]) / count}
        if self._num_classes > 10:
            scalars["val/prec@5"] = 100.0 * float(totals["correct@5"]) / count
        scalars["val/loss"] = float(totals["loss"]) / count
        line = f"eval at step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in scalars.items())
        return scalars, line


class Locality:
    """MAD and entropy of every head on a fixed subset of test images; writes locality.json and
    the figures (process 0) and redraws the training curves."""

    name = "locality"

    def __init__(
        self,
        run_dir: RunDir,
        predictor: Predictor,
        images: np.ndarray,
        *,
        dataset: str,
        batch_size: int,
        mesh: Mesh,
        every_steps: int,
    ):
        self.every_steps = every_steps
        self._run_dir, self._predictor, self._images = run_dir, predictor, images
        self._dataset, self._batch_size, self._mesh = dataset, batch_size, mesh

    def run(self, params: Any, step: int) -> tuple[dict[str, float], str]:
        record = analyze_and_write(
            self._run_dir,
            self._predictor,
            params,
            self._images,
            step=step,
            dataset=self._dataset,
            mesh=self._mesh,
            batch_size=self._batch_size,
        )
        if jax.process_index() == 0:
            write_training_curves(self._run_dir)
        summary = record["summary"]
        line = (
            f"locality at step {step}: min MAD first layer {summary['min_mad_first_layer']:.3f}, "
            f"early {summary['min_mad_early']:.3f}"
        )
        return locality_scalars(summary), line


def evaluator_names(config: ml_collections.ConfigDict) -> list[str]:
    """`config.evals` ("classification,locality") as a list of names."""
    return [name.strip() for name in config.evals.split(",") if name.strip()]


def build_evaluators(
    config: ml_collections.ConfigDict,
    plan: StepPlan,
    predictor: Predictor,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    mesh: Mesh,
    run_dir: RunDir,
) -> list[Evaluator]:
    """The evaluators `config.evals` names, in that order."""
    built: list[Evaluator] = []
    for name in evaluator_names(config):
        if name == "classification":
            built.append(
                Classification(
                    predictor,
                    test_images,
                    test_labels,
                    num_classes=predictor.model.num_classes,
                    batch_size=config.batch_size,
                    mesh=mesh,
                    every_steps=plan.eval_every_steps,
                )
            )
        elif name == "locality":
            built.append(
                Locality(
                    run_dir,
                    predictor,
                    test_images[: config.analysis.num_images],
                    dataset=config.dataset,
                    batch_size=config.batch_size,
                    mesh=mesh,
                    every_steps=plan.analysis_every_steps,
                )
            )
    return built
