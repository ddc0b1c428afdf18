"""The run directory: what a run writes at its start (config.json, plan.json), whether it is
finished, a metrics row cut short, and the same directory on gs:// (a fake GCS in
memory)."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from vit_locality import sweep
from vit_locality.analysis.locality import DEFINITIONS
from vit_locality.analysis.results import (
    locality_scalars,
    write_locality,
    write_training_curves,
)
from vit_locality.errors import UserError
from vit_locality.evaluator_options import period_steps
from vit_locality.plan import StepPlan
from vit_locality.report import write_report
from vit_locality.validation import check_workdir
from vit_locality.workdir import RunDir
from vit_locality.workdir.metrics import MetricWriter

from .conftest import REPO_ROOT, cifar_locality_record
from .helpers import tensorboard_points, tiny_config


def test_step_plan_of_a_config():
    config = tiny_config(6, warmup_epochs=0.5, eval_every_steps=None)
    config.total_steps, config.total_epochs = None, 2.0
    # 5,085 training images in batches of 64: 79 full batches per epoch
    assert StepPlan.from_config(config, 5085) == StepPlan(
        steps_per_epoch=79, total_steps=158, warmup_steps=40
    )
    assert period_steps(config.evals.classification, 79) == 79
    assert period_steps(config.evals.locality, 79) == 158  # analysis.every_epochs = 2 (smoke)


def test_a_run_directory_on_gcs_is_written_read_and_reported(fake_gcs, monkeypatch):
    """What train, analyze, sweep and report do to a workdir, on gs:// (the checkpoints go
    through orbax's own gs:// support, which needs a real bucket; TensorBoard's writer through
    TensorFlow's, so it is left out). A resumed run's metrics writer keeps the earlier rows
    although the bucket cannot append."""
    monkeypatch.setitem(sys.modules, "tensorboard.summary.writer.event_file_writer", None)
    config = tiny_config(20)
    plan = StepPlan.from_config(config, 5085)
    run_dir = RunDir(f"{fake_gcs}/runs/c10_seed0")
    assert not run_dir.holds_run() and not run_dir.is_finished()
    run_dir.write_start(config, plan)
    per_head = {name: np.full((2, 2), 0.4) for name in DEFINITIONS}
    record = cifar_locality_record(per_head, step=20, num_images=16)
    rows = [
        {"step": 10, "epoch": 0.13, "train/loss": 2.2},
        {"step": 20, "epoch": 0.25, "train/loss": 2.1},
        {"step": 20, "epoch": 0.25, "val/prec@1": 21.5, "val/loss": 2.0},
        {"step": 20, "epoch": 0.25, **locality_scalars(record["summary"])},
    ]
    writer = MetricWriter(run_dir)
    for row in rows[:2]:
        writer.write(row["step"], {k: v for k, v in row.items() if k != "step"})
    writer.close()
    writer = MetricWriter(run_dir, resumed_step=20)  # a resumed run keeps the rows before it
    for row in rows[2:]:
        writer.write(row["step"], {k: v for k, v in row.items() if k != "step"})
    writer.close()
    write_locality(run_dir, record)
    write_training_curves(run_dir)

    again = RunDir(f"{fake_gcs}/runs/c10_seed0")
    assert again.read_config() == config.to_dict() and again.read_plan() == plan
    assert again.read_metrics() == rows and again.is_finished()
    assert again.read_locality()["summary"] == record["summary"]
    assert again.plots_dir.joinpath("training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert sweep.locality_note(again) == ""

    report_md = write_report([f"{fake_gcs}/runs"], f"{fake_gcs}/report")
    assert str(report_md) == f"{fake_gcs}/report/report.md"
    assert "| `c10_seed0` | CIFAR-10 | cm+ls | 0 | 20 | 21.50 | 0.400 | step 20 |" in (
        report_md.read_text()
    )


def test_a_gcs_workdir_without_the_libraries_that_reach_it_is_refused(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError) as error:
        check_workdir("gs://bucket/run")
    assert str(error.value) == (
        "workdir gs://bucket/run: reaching GCS needs TensorFlow or gcsfs, and neither is "
        "installed: pip install gcsfs"
    )


def test_a_last_row_cut_short_by_a_full_disk_is_left_out(tmp_path):
    """The disk filled up in the middle of a row: the rows before it are read (a rerun rewrites
    the file from them), and a broken row anywhere else is still an error."""
    run_dir = RunDir(tmp_path)
    rows = [{"step": 1, "train/loss": 2.5}, {"step": 2, "train/loss": 2.25}]
    whole = "".join(json.dumps(r) + "\n" for r in rows)
    run_dir.metrics_file.write_text(whole + '{"step": 3, "train/lo')
    assert run_dir.read_metrics() == rows
    run_dir.metrics_file.write_text('{"step": 0, "tr\n' + whole)
    with pytest.raises(json.JSONDecodeError):
        run_dir.read_metrics()


def test_local_tensorboard_events_are_written_without_importing_tensorflow(tmp_path):
    """A run on a local workdir logs to TensorBoard without TensorFlow's import (seconds at every
    start); tensorboard's own reader, which checks each record's CRC, reads the events back."""
    script = (
        "import sys; from vit_locality.workdir import RunDir; "
        "from vit_locality.workdir.metrics import MetricWriter; "
        f"w = MetricWriter(RunDir({str(tmp_path)!r})); "
        "w.write(3, {'train/loss': 1.5, 'epoch': 0.25}); w.close(); "
        "print('tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout == "False\n", result.stderr[-2000:]
    assert tensorboard_points(tmp_path) == [(3, "train/loss", 1.5), (3, "epoch", 0.25)]
