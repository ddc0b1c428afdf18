"""Accuracy and loss over every test example. Options: the period (`every_steps` or
`every_epochs`; default once per epoch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from vit_locality.data.eval_input import eval_batches
from vit_locality.evaluator_options import period_steps
from vit_locality.evaluators import Context
from vit_locality.parallel import sharding
from vit_locality.step import make_eval_step


class Classification:
    """Accuracy and loss over every test example (the last batch padded and masked)."""

    name = "classification"

    def __init__(self, context: Context, options: Mapping[str, Any]):
        """Every test example, in batches of `config.batch_size`."""
        self.every_steps = period_steps(options, context.plan.steps_per_epoch)
        self._images, self._labels = context.test_images, context.test_labels
        self._num_classes = context.predictor.model.num_classes
        self._batch_size, self._mesh = context.config.batch_size, context.mesh
        self._eval_step = jax.jit(
            make_eval_step(context.predictor, self._num_classes),
            out_shardings=sharding.replicated(context.mesh),
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


def build(context: Context, options: Mapping[str, Any]) -> Classification:
    return Classification(context, options)
