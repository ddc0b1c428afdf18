"""The train loop: one linear function, in banner sections, from config to trained checkpoint.

Resume is automatic: a workdir with checkpoints continues from its latest committed one, and
since the input and the step's randomness are functions of the step, the resumed run ends with
the parameters an uninterrupted run would have. SIGTERM (a preempted VM) saves a checkpoint and
returns; a non-finite loss or gradient norm stops the run before it can be checkpointed.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import signal
import time
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np

from vit_locality import checkpointing, metrics, sharding, step
from vit_locality.analysis.results import (
    analyze_and_write,
    locality_scalars,
    write_training_curves,
)
from vit_locality.data.datasets import DATASETS
from vit_locality.data.eval_input import eval_batches
from vit_locality.data.sources import load_split
from vit_locality.errors import ConfigError
from vit_locality.models import build_model
from vit_locality.validation import check_resumable, check_workdir, validate_config
from vit_locality.workdir import read_saved_config


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became non-finite."""


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Step counts derived from the config and the size of the training set."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    eval_every_steps: int
    analysis_every_steps: int

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, num_train: int) -> Schedule:
        spe = num_train // config.batch_size
        if spe == 0:
            raise ConfigError(
                f"config.batch_size={config.batch_size} is not allowed: at most the "
                f"{num_train} training examples"
            )
        total = config.total_steps or max(1, round(config.total_epochs * spe))
        warmup = round(config.warmup_epochs * spe)
        if warmup >= total:
            raise ConfigError(
                f"config.warmup_epochs={config.warmup_epochs} is not allowed: fewer than the "
                f"{total / spe:.2f} epochs of training ({warmup} >= {total} steps)"
            )
        analysis_every = max(1, round(config.analysis.every_epochs * spe))
        return cls(spe, total, warmup, config.eval_every_steps or spe, analysis_every)


class _StopSignal:
    """Remembers a SIGTERM so the loop can checkpoint and return at the next step."""

    def __init__(self) -> None:
        self.received = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = True

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)


def _check_finite(pending: list[tuple[int, dict[str, float]]], writer: metrics.MetricWriter):
    for step_num, values in pending:
        bad = [k for k in ("loss", "grad_norm") if not math.isfinite(values[k])]
        if bad:
            reason = f"non-finite {' and '.join(bad)} at step {step_num}"
            writer.write(step_num, {"error": reason})
            raise TrainingDiverged(f"{reason}; the last good checkpoint is kept")


def evaluate(eval_step, params, images, labels, global_batch: int, mesh) -> dict[str, float]:
    """Top-1/top-5 accuracy (%) and mean loss over every example of the split."""
    totals = None
    for batch in eval_batches(
        images,
        labels,
        global_batch_size=global_batch,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    ):
        sums = eval_step(params, sharding.to_global(batch, sharding.batch_sharded(mesh)))
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = jax.device_get(totals)
    count = float(totals["count"])
    return {
        "val/prec@1": 100.0 * float(totals["correct@1"]) / count,
        "val/prec@5": 100.0 * float(totals["correct@5"]) / count,
        "val/loss": float(totals["loss"]) / count,
    }


def _train_input(
    config: ml_collections.ConfigDict,
    images: np.ndarray,
    labels: np.ndarray,
    mesh: jax.sharding.Mesh,
    start_step: int,
    sched: Schedule,
) -> Iterator[dict[str, jax.Array]]:
    """Global train batches from `start_step` on: tf.data on the host, or on the device."""
    if config.data.on_device:
        from vit_locality.data.device_input import device_train_batches

        return device_train_batches(
            images,
            labels,
            mesh=mesh,
            global_batch_size=config.batch_size,
            start_step=start_step,
            total_steps=sched.total_steps,
            seed=config.seed,
            padding=config.aug.crop_padding,
            flip=config.aug.flip,
        )
    from vit_locality.data.augment import make_train_augment  # TensorFlow from here on
    from vit_locality.data.train_input import train_batches

    host_batches = train_batches(
        images,
        labels,
        augment=make_train_augment(config.aug),
        global_batch_size=config.batch_size,
        start_step=start_step,
        total_steps=sched.total_steps,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    return sharding.prefetch_to_device(host_batches, sharding.batch_sharded(mesh))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains (or resumes) the run in `workdir`; returns the last eval metrics and the step."""
    # ------------------------------------------------------------------ Setup and checks
    mesh = sharding.make_mesh()
    validate_config(config, mesh.size)
    workdir_path = pathlib.Path(workdir)
    check_workdir(workdir_path)
    saved_config = read_saved_config(workdir_path)
    if saved_config is not None:
        check_resumable(saved_config, config, workdir)
    info = DATASETS[config.dataset]
    is_writer = jax.process_index() == 0

    # ------------------------------------------------------------------ Data
    train_images, train_labels = load_split(config, "train")
    test_images, test_labels = load_split(config, "test")
    sched = Schedule.from_config(config, len(train_images))

    # ------------------------------------------------------------------ Model and state
    model = build_model(config.model, info.num_classes)
    schedule = step.make_schedule(config.lr, sched.warmup_steps, sched.total_steps)
    tx = step.make_optimizer(schedule, config.wd, config.grad_clip_norm)
    state = step.init_state(config, model, tx, mesh)
    ckpt = checkpointing.Checkpointer(workdir_path / "checkpoints", config.kept_checkpoints)
    start_step = ckpt.latest_step() or 0
    if start_step:
        state, _ = ckpt.restore(start_step, state)
        if is_writer:
            print(f"Resuming {workdir} from step {start_step}/{sched.total_steps}", flush=True)

    # ------------------------------------------------------------------ Workdir
    # Written after the restore, so a checkpoint that cannot be read leaves the workdir untouched.
    if is_writer:
        workdir_path.mkdir(parents=True, exist_ok=True)
        (workdir_path / "config.json").write_text(config.to_json(indent=2) + "\n")
    writer = metrics.MetricWriter(workdir_path, enabled=is_writer)

    # ------------------------------------------------------------------ Steps
    train_step = step.jit_train_step(config, model, schedule, mesh)
    eval_step = jax.jit(
        step.make_eval_step(model, num_classes=info.num_classes, mean=info.mean, std=info.std),
        out_shardings=sharding.replicated(mesh),
    )

    def run_eval(step_num: int) -> dict[str, float]:
        results = evaluate(
            eval_step, state.params, test_images, test_labels, config.batch_size, mesh
        )
        if info.num_classes <= 10:
            results.pop("val/prec@5")
        writer.write(step_num, {"epoch": step_num / sched.steps_per_epoch, **results})
        if is_writer:
            print(
                f"eval at step {step_num}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in results.items()),
                flush=True,
            )
        return results

    def run_analysis(step_num: int) -> None:
        """Locality of every head on the fixed eval subset: locality.json, plots, scalars."""
        record = analyze_and_write(
            workdir_path,
            model,
            state.params,
            test_images[: config.analysis.num_images],
            step=step_num,
            dataset=config.dataset,
            mesh=mesh,
            batch_size=config.batch_size,
        )
        summary = record["summary"]
        writer.write(
            step_num,
            {"epoch": step_num / sched.steps_per_epoch, **locality_scalars(summary)},
        )
        if is_writer:
            write_training_curves(workdir_path)
            print(
                f"locality at step {step_num}: min MAD first layer "
                f"{summary['min_mad_first_layer']:.3f}, early {summary['min_mad_early']:.3f}",
                flush=True,
            )

    def save(step_num: int) -> None:
        ckpt.save(step_num, state, {"step": step_num, "dataset": config.dataset})

    # ------------------------------------------------------------------ Train loop
    batches = _train_input(config, train_images, train_labels, mesh, start_step, sched)
    stop = _StopSignal()
    pending: list[tuple[int, dict[str, jax.Array]]] = []
    results: dict[str, float] = {}
    step_num = start_step
    interval_start, interval_first_step = time.perf_counter(), start_step
    try:
        for step_num, batch in enumerate(batches, start=start_step + 1):
            with jax.transfer_guard("disallow"):  # an implicit host transfer would stall steps
                state, step_metrics = train_step(state, batch)
            pending.append((step_num, step_metrics))
            is_last = step_num == sched.total_steps
            preempted = stop.received  # read once: a SIGTERM between two reads would skip the save
            must_save = step_num % config.ckpt_every_steps == 0 or is_last or preempted

            if step_num % config.log_every_steps == 0 or must_save:
                fetched = [(s, jax.device_get(m)) for s, m in pending]
                pending.clear()
                _check_finite(fetched, writer)
                elapsed = time.perf_counter() - interval_start
                seconds_per_step = elapsed / max(step_num - interval_first_step, 1)
                scalars = {
                    "epoch": step_num / sched.steps_per_epoch,
                    "train/loss": float(np.mean([m["loss"] for _, m in fetched])),
                    "train/grad_norm": float(fetched[-1][1]["grad_norm"]),
                    "train/lr": float(fetched[-1][1]["lr"]),
                    "train/img_per_s": config.batch_size / seconds_per_step,
                }
                writer.write(step_num, scalars)
                if is_writer:
                    print(
                        metrics.progress_line(
                            step_num, sched.total_steps, scalars, seconds_per_step
                        ),
                        flush=True,
                    )
            if must_save:
                save(step_num)
            if preempted:
                ckpt.wait()
                if is_writer:
                    print(f"SIGTERM: saved step {step_num}; resume by running again", flush=True)
                return {"step": step_num, "preempted": True}
            if step_num % sched.eval_every_steps == 0 or is_last:
                results = run_eval(step_num)
            if step_num % sched.analysis_every_steps == 0 or is_last:
                run_analysis(step_num)
            if step_num % config.log_every_steps == 0 or must_save:
                interval_start, interval_first_step = time.perf_counter(), step_num
    finally:
        stop.restore()
        ckpt.close()
        writer.close()
    if is_writer and step_num == start_step and start_step == sched.total_steps:
        print(f"{workdir} is already trained ({start_step} steps)", flush=True)
    return {"step": step_num, **results}
