"""MAD and entropy of every head on the first test images: locality.json, plots/ and the
`locality/...` scalars (docs/locality.md). Options: `num_images` and the period (`every_steps` or
`every_epochs`); the default config names them `analysis.num_images`, `analysis.every_epochs`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from vit_locality.analysis.results import (
    analyze_and_write,
    locality_scalars,
    write_training_curves,
)
from vit_locality.evaluator_options import period_steps
from vit_locality.evaluators import Context


class Locality:
    """MAD and entropy of every head on a fixed subset of test images; writes locality.json and
    the figures (process 0) and redraws the training curves, whose last panel is its own."""

    name = "locality"

    def __init__(self, context: Context, options: Mapping[str, Any]):
        """The first `num_images` test images, in batches of `config.batch_size`."""
        self.every_steps = period_steps(options, context.plan.steps_per_epoch)
        self._run_dir, self._predictor = context.run_dir, context.predictor
        self._images = context.test_images[: options["num_images"]]
        self._dataset, self._batch_size = context.config.dataset, context.config.batch_size
        self._mesh = context.mesh

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


def build(context: Context, options: Mapping[str, Any]) -> Locality:
    return Locality(context, options)
