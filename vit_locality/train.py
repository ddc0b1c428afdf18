"""The train loop: one linear function, in banner sections, from config to trained checkpoint.

Resume is automatic: a workdir with checkpoints continues from its latest readable one (an
unreadable one is set aside as `<step>.corrupt`, saying so on stderr), and since the input and the
step's randomness are functions of the step, the resumed run ends with the parameters an
uninterrupted run would have. Rows a killed session logged after that step are dropped (each step
is logged once), and evaluations due at that step that a kill cut short run before training goes
on (a run killed during its final evaluations finishes them without training). SIGTERM (a
preempted VM) saves a checkpoint and returns; a non-finite loss or gradient norm stops the run
before it can be checkpointed.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np

from vit_locality import step, train_state
from vit_locality.data.sources import load_split
from vit_locality.errors import UserError
from vit_locality.evaluator_options import ROW_KEYS
from vit_locality.evaluators import Context, Evaluator, build_evaluators
from vit_locality.models import build_model
from vit_locality.parallel import multihost, sharding
from vit_locality.plan import StepPlan
from vit_locality.predict import Predictor
from vit_locality.sigterm import SigtermFlag
from vit_locality.validation import check_resumable, check_workdir, validate_config
from vit_locality.workdir import RunDir, checkpointing, metrics
from vit_locality.workdir.lock import WorkdirLock


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became non-finite."""


# With several processes, how often they agree on whether a SIGTERM came (seconds; a target,
# reached from the measured seconds per step).
AGREEMENT_EVERY_S = 2.0


class _StopAgreement:
    """Whether a SIGTERM reached any process, asked at every step, answered on every process
    alike. One process checks its flag every step. Several agree about every AGREEMENT_EVERY_S
    seconds whatever log_every_steps is: each agreement all-gathers every process's flag and
    seconds per step since the last one, from which all derive the same number of steps to the
    next."""

    def __init__(self, stop: SigtermFlag, step_num: int):
        self._stop = stop
        self._next = step_num
        self._since_step, self._since = step_num, time.perf_counter()

    def preempted(self, step_num: int) -> bool:
        """At `step_num` (the steps before it dispatched); a collective at agreement steps."""
        if jax.process_count() == 1:
            return self._stop.received
        if step_num < self._next:
            return False
        now, steps = time.perf_counter(), step_num - self._since_step
        per_step = (now - self._since) / steps if steps else math.inf  # inf: no step to time
        gathered = multihost.gather([float(self._stop.received), per_step])  # [processes, 2]
        slowest = max(float(gathered[:, 1].max()), 1e-9)
        self._next = step_num + max(1, int(AGREEMENT_EVERY_S / slowest))
        self._since_step, self._since = step_num, now
        return bool(gathered[:, 0].any())


def _check_finite(pending: list[tuple[int, dict[str, float]]], writer: metrics.MetricWriter):
    for step_num, values in pending:
        bad = [k for k in ("loss", "grad_norm") if not math.isfinite(values[k])]
        if bad:
            reason = f"non-finite {' and '.join(bad)} at step {step_num}"
            writer.write(step_num, {"error": reason})
            raise TrainingDiverged(f"{reason}; the last good checkpoint is kept")


@contextlib.contextmanager
def _one_writer(run_dir: RunDir) -> Iterator[None]:
    """Holds the workdir's lock (taken by process 0) for the block; UserError on every process,
    before anything is written, when another live run holds it."""
    lock, refusal = None, None
    if jax.process_index() == 0:
        try:
            lock = WorkdirLock.acquire(run_dir.lock_file)
        except UserError as e:
            refusal = e
    if multihost.any_process(refusal is not None):
        raise refusal or UserError(f"workdir {run_dir.path} is in use; process 0 names by whom")
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _restore_latest_readable(ckpt: checkpointing.Checkpointer, like: Any) -> tuple[Any | None, int]:
    """The state of the newest checkpoint that restores, and its step; `(None, 0)` when none
    does. Each unreadable one is set aside (process 0) with one line on stderr naming it."""
    for step_num in sorted(ckpt.all_steps(), reverse=True):
        try:
            state, _ = ckpt.restore(step_num, like)
        except checkpointing.UnreadableCheckpoint as e:
            unreadable = e
        else:
            unreadable = None
        if not multihost.any_process(unreadable is not None):
            return state, step_num
        if jax.process_index() == 0:
            aside = ckpt.set_aside(step_num)
            reason = unreadable or f"checkpoint {step_num} cannot be restored on another process"
            print(f"warning: {reason}; moved to {aside}", file=sys.stderr, flush=True)
        multihost.barrier("set_aside")
        ckpt.reload()
    return None, 0


def _due(evaluators: list[Evaluator], step_num: int, plan: StepPlan) -> list[Evaluator]:
    """The evaluators that run at `step_num`: at their period and at the final step."""
    return [e for e in evaluators if step_num % e.every_steps == 0 or step_num == plan.total_steps]


def _cut_short(
    run_dir: RunDir, evaluators: list[Evaluator], step_num: int, plan: StepPlan
) -> list[Evaluator]:
    """The evaluators due at the resumed step `step_num` whose rows metrics.jsonl lacks (a kill
    came between its checkpoint and its evaluations), as process 0 reads them."""
    due = _due(evaluators, step_num, plan) if step_num else []
    present = run_dir.keys_at(step_num) if jax.process_index() == 0 else set()
    missing = multihost.from_process_0(
        [jax.process_index() == 0 and ROW_KEYS[e.name] not in present for e in due]
    )
    return [e for e, m in zip(due, missing, strict=True) if m]


def _train_input(
    config: ml_collections.ConfigDict,
    images: np.ndarray,
    labels: np.ndarray,
    mesh: jax.sharding.Mesh,
    start_step: int,
    plan: StepPlan,
) -> Iterator[dict[str, jax.Array]]:
    """Global train batches from `start_step` on: tf.data on the host, or on the device."""
    # Which examples each step sees, the same for both inputs.
    order = dict(
        global_batch_size=config.batch_size,
        start_step=start_step,
        total_steps=plan.total_steps,
        seed=config.seed,
    )
    if config.data.on_device:
        from vit_locality.augment import registry
        from vit_locality.data.device_input import device_train_batches

        return device_train_batches(
            images, labels, mesh=mesh, ops=registry.device_image_ops(config), **order
        )
    from vit_locality.data.augment import make_train_augment  # TensorFlow from here on
    from vit_locality.data.train_input import train_batches

    host_batches = train_batches(
        images,
        labels,
        augment=make_train_augment(config),
        **order,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    return sharding.prefetch_to_device(host_batches, sharding.batch_sharded(mesh))


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, collective_timeout_s: float = 600.0
) -> dict[str, Any]:
    """Trains (or resumes) the run in `workdir`; returns the final step and the last scalars of
    every evaluator. A SIGTERM is remembered from the start (during loading, restoring or
    compiling too): every process then stops at the same step. With several processes, a run
    that does not move for `collective_timeout_s` seconds ends (`multihost.Watchdog`)."""
    stop = SigtermFlag()
    watchdog = multihost.Watchdog(collective_timeout_s)
    try:
        result = _train_and_evaluate(config, workdir, stop, watchdog)
    finally:
        watchdog.stop()
        stop.restore()
    # No process returns before process 0 has written the run (its last rows, its lock
    # released): what each worker of `sweep --multihost` reads next.
    multihost.barrier("run written")
    return result


def _train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    stop: SigtermFlag,
    watchdog: multihost.Watchdog,
) -> dict[str, Any]:
    # ------------------------------------------------------------------ Setup and checks
    mesh = sharding.make_mesh()
    validate_config(config, mesh.size)
    run_dir = RunDir(workdir)
    check_workdir(workdir)
    saved_config = run_dir.read_config()
    if saved_config is not None:
        check_resumable(saved_config, config, workdir)
    is_writer = jax.process_index() == 0

    # ------------------------------------------------------------------ Data
    train_images, train_labels = load_split(config, "train")
    test_images, test_labels = load_split(config, "test")
    plan = StepPlan.from_config(config, len(train_images))

    # ------------------------------------------------------------------ One writer
    with _one_writer(run_dir):
        # ------------------------------------------------------------------ Model and state
        model = build_model(config)
        predictor = Predictor.for_dataset(model, config.dataset)
        schedule, tx = train_state.optimizer(config, plan)
        ckpt = checkpointing.Checkpointer(run_dir.checkpoints_dir, config.kept_checkpoints)
        like = train_state.abstract_state(config, model, tx, mesh)
        state, start_step = _restore_latest_readable(ckpt, like)
        if start_step:
            if is_writer:
                print(f"Resuming {workdir} from step {start_step}/{plan.total_steps}", flush=True)
        else:
            state = train_state.init_state(config, model, tx, mesh)

        # ------------------------------------------------------------------ Workdir
        if is_writer:
            run_dir.write_start(config, plan)
        writer = metrics.MetricWriter(run_dir, enabled=is_writer, resumed_step=start_step)

        # ------------------------------------------------------------------ Steps and evaluators
        train_step = step.jit_train_step(config, predictor, schedule, mesh)
        evaluators = build_evaluators(
            Context(config, plan, predictor, test_images, test_labels, mesh, run_dir)
        )

        results: dict[str, float] = {}

        def save(step_num: int) -> None:
            ckpt.save(step_num, state, {"step": step_num, "dataset": config.dataset})

        def evaluate(step_num: int, due: list[Evaluator]) -> None:
            for evaluator in due:
                watchdog.beat(step_num)
                scalars, line = evaluator.run(state.params, step_num)
                writer.write(step_num, {"epoch": step_num / plan.steps_per_epoch, **scalars})
                results.update(scalars)
                if is_writer:
                    print(line, flush=True)

        # ------------------------------------------------------------------ Train loop
        batches = _train_input(config, train_images, train_labels, mesh, start_step, plan)
        agreement = _StopAgreement(stop, start_step)
        pending: list[tuple[int, dict[str, jax.Array]]] = []
        step_num = start_step
        interval_start, interval_first_step = time.perf_counter(), start_step
        try:
            cut_short = _cut_short(run_dir, evaluators, start_step, plan)
            if cut_short and is_writer:
                names = ", ".join(e.name for e in cut_short)
                print(f"Evaluating step {start_step} ({names}): a stop came before", flush=True)
            evaluate(start_step, cut_short)
            if agreement.preempted(start_step):  # a SIGTERM during loading, restore or compiling
                if is_writer:
                    print(f"SIGTERM before step {start_step + 1}: nothing new to save", flush=True)
                return {"step": start_step, "preempted": True}
            for step_num, batch in enumerate(batches, start=start_step + 1):
                with jax.transfer_guard("disallow"):  # an implicit host transfer would stall steps
                    state, step_metrics = train_step(state, batch)
                watchdog.beat(step_num)
                pending.append((step_num, step_metrics))
                is_last = step_num == plan.total_steps
                # SIGTERM on any process stops every process at the same step (_StopAgreement).
                # The flag is read once: a SIGTERM between two reads would skip the save it
                # announced.
                preempted = agreement.preempted(step_num)
                must_save = step_num % config.ckpt_every_steps == 0 or is_last or preempted
                epoch = step_num / plan.steps_per_epoch
                log_now = step_num % config.log_every_steps == 0 or must_save

                if log_now:
                    fetched = [(s, jax.device_get(m)) for s, m in pending]
                    pending.clear()
                    _check_finite(fetched, writer)
                    elapsed = time.perf_counter() - interval_start
                    seconds_per_step = elapsed / max(step_num - interval_first_step, 1)
                    scalars = {
                        "epoch": epoch,
                        "train/loss": float(np.mean([m["loss"] for _, m in fetched])),
                        "train/grad_norm": float(fetched[-1][1]["grad_norm"]),
                        "train/lr": float(fetched[-1][1]["lr"]),
                        "train/img_per_s": config.batch_size / seconds_per_step,
                    }
                    writer.write(step_num, scalars)
                    if is_writer:
                        print(
                            metrics.progress_line(
                                step_num, plan.total_steps, scalars, seconds_per_step
                            ),
                            flush=True,
                        )
                if must_save:
                    save(step_num)
                if preempted:
                    ckpt.wait()
                    if is_writer:
                        print(
                            f"SIGTERM: saved step {step_num}; resume by running again", flush=True
                        )
                    return {"step": step_num, "preempted": True}
                evaluate(step_num, _due(evaluators, step_num, plan))
                if log_now:
                    interval_start, interval_first_step = time.perf_counter(), step_num
        finally:
            ckpt.close()
            writer.close()
        if is_writer and step_num == start_step and start_step == plan.total_steps:
            print(f"{workdir} is already trained ({start_step} steps)", flush=True)
        return {"step": step_num, **results}
