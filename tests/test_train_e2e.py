"""End to end on the real CIFAR-10 sample, as real processes: training learns and checkpoints,
and SIGKILL + rerun resumes exactly (8 emulated devices, tf.data input); SIGTERM checkpoints and
exits 0, divergence stops naming its step (input on one device: what the loop does whatever
feeds it); bad input exits 2 before touching the workdir."""

import json
import os
import signal
import subprocess

import jax
import numpy as np
import pytest

from vit_locality.workdir import RunDir

from .conftest import CIFAR10_SAMPLE, REPO_ROOT
from .helpers import (
    ON_DEVICE,
    ONE_DEVICE_ENV,
    TOTAL_STEPS,
    command,
    final_params,
    run,
    saved_step,
    start,
    tensorboard_points,
    wait_for_checkpoint,
    wait_for_row,
    without_speed,
)

pytestmark = pytest.mark.skipif(
    not (CIFAR10_SAMPLE / "test_batch.bin").exists(), reason="real CIFAR-10 sample absent"
)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("runs") / "uninterrupted"
    result = run(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result


def test_training_learns_and_leaves_the_workdir_design_describes(uninterrupted):
    workdir, result = uninterrupted
    config = json.loads((workdir / "config.json").read_text())
    assert config["model"]["width"] == 32 and config["mix"]["cutmix_alpha"] == 1.0
    rows = RunDir(workdir).read_metrics()
    train = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in train] == list(range(10, TOTAL_STEPS + 1, 10))
    assert {"epoch", "train/lr", "train/img_per_s"} <= set(train[0])
    assert train[-1]["train/loss"] < train[0]["train/loss"]
    evals = [r for r in rows if "val/prec@1" in r]
    assert [r["step"] for r in evals] == [30, 60]
    assert "val/prec@5" not in evals[0]  # 10 classes
    assert evals[-1]["val/prec@1"] > 15.0  # chance is 10% on the 1017 real test images
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [20, 40, 60]
    locality = json.loads((workdir / "locality.json").read_text())
    assert locality["step"] == TOTAL_STEPS and locality["grid"] == [8, 8]
    assert np.asarray(locality["per_head"]["mad"]).shape == (2, 2)  # [layers, heads]
    (row,) = [r for r in rows if "locality/min_mad_first_layer" in r]
    assert row["step"] == TOTAL_STEPS
    assert row["locality/min_mad_first_layer"] == locality["summary"]["min_mad_first_layer"]
    for name in ("mad_per_head", "entropy_per_head", "attention_maps", "training_curves"):
        assert (workdir / "plots" / f"{name}.png").stat().st_size > 0
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert f"step {TOTAL_STEPS}/{TOTAL_STEPS} (100.0%)" in result.stdout
    assert "ETA 0:00:00" in result.stdout


def test_sigkill_then_rerun_ends_identical_and_logs_each_step_once(uninterrupted, tmp_path):
    """Killed after logging steps 21-30 (train and eval rows) past its checkpoint of step 20:
    the rerun replays them, and metrics.jsonl and TensorBoard hold each step once, equal to the
    uninterrupted run's (timing aside)."""
    reference, _ = uninterrupted
    workdir = tmp_path / "killed"
    process = start(workdir)
    wait_for_row(workdir, "val/prec@1", 30, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (workdir / "checkpoints" / "20").is_dir()
    resumed = run(workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    committed = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
    assert "Resuming" in resumed.stdout and "from step" in resumed.stdout
    assert max(committed) == TOTAL_STEPS
    jax.tree.map(np.testing.assert_array_equal, final_params(workdir), final_params(reference))
    rows = without_speed(RunDir(workdir).read_metrics())
    assert rows == without_speed(RunDir(reference).read_metrics())
    assert tensorboard_points(workdir) == tensorboard_points(reference)
    again = run(workdir)  # a finished run started again trains nothing
    assert again.returncode == 0 and "already trained" in again.stdout


def test_a_sigterm_saves_and_exits_zero_and_a_kill_in_the_final_analysis_is_finished_by_a_rerun(
    tmp_path,
):
    """SIGTERM once checkpoint 20 is committed: the run saves its step and exits 0. Resumed from
    that step, with the final locality analysis on every test image (so it lasts), SIGKILL once
    the final checkpoint is committed, while that analysis runs: the rerun trains nothing, runs
    the final analysis, and the run is finished (one row per step and evaluator)."""
    workdir = tmp_path / "preempted_then_killed_at_the_end"
    process = start(workdir, *ON_DEVICE)
    wait_for_checkpoint(workdir, 20, process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    saved = saved_step(output)
    assert 20 <= saved < TOTAL_STEPS
    assert (workdir / "checkpoints" / str(saved)).is_dir()

    every_image = ("--config.analysis.num_images=1017", *ON_DEVICE)
    process = subprocess.Popen(
        command(workdir, *every_image),
        cwd=REPO_ROOT,
        env=ONE_DEVICE_ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(f"eval at step {TOTAL_STEPS}"):
            break
    assert any(f"Resuming {workdir} from step {saved}/{TOTAL_STEPS}" in x for x in lines), lines
    wait_for_checkpoint(workdir, TOTAL_STEPS, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    run_dir = RunDir(workdir)
    assert not any("locality/min_mad_first_layer" in r for r in run_dir.read_metrics())
    assert run_dir.read_locality() is None

    rerun = run(workdir, *every_image)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"Evaluating step {TOTAL_STEPS} (locality): a stop came before" in rerun.stdout
    assert "ETA" not in rerun.stdout  # no train step
    rows = run_dir.read_metrics()
    logged = sorted({*range(10, TOTAL_STEPS + 1, 10), saved})  # the SIGTERM's step logs a row
    assert [r["step"] for r in rows if "train/loss" in r] == logged
    assert [r["step"] for r in rows if "val/prec@1" in r] == [30, TOTAL_STEPS]
    assert [r["step"] for r in rows if "locality/min_mad_first_layer" in r] == [TOTAL_STEPS]
    assert run_dir.read_locality()["step"] == TOTAL_STEPS and run_dir.is_finished()


def test_bad_config_exits_2_with_one_line_and_no_workdir(tmp_path):
    workdir = tmp_path / "bad"
    result = run(workdir, "--config.lr=-1.0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: config.lr=-1.0 is not allowed: a positive finite number"
    )
    assert not workdir.exists()


@pytest.mark.skipif(os.environ.get("CI") is None, reason="only where tfds cannot download")
def test_offline_tfds_error_points_to_files_source(tmp_path):
    result = run(tmp_path / "w", "--config.data.source=tfds", f"--config.data.dir={tmp_path}")
    assert result.returncode == 2
    assert "--config.data.source=files" in result.stderr.strip().splitlines()[-1]


def test_divergence_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    workdir = tmp_path / "diverged"
    result = run(
        workdir,
        "--config.lr=1e38",
        "--config.warmup_epochs=0",
        "--config.log_every_steps=1",
        "--config.ckpt_every_steps=1",
        "--config.total_steps=12",
        *ON_DEVICE,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: training diverged: non-finite loss")
    bad_step = int(line.split(" at step ")[1].split(";")[0])
    (error_row,) = [r for r in RunDir(workdir).read_metrics() if "error" in r]
    assert error_row["step"] == bad_step
    saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and max(saved) == bad_step - 1
    params = final_params(workdir, step=bad_step - 1)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))
