"""The run directory: what a run writes at its start (config.json, plan.json), whether it is
finished, the evaluators `config.evals` chooses, and the same directory on gs:// (a fake GCS in
memory)."""

import dataclasses
import importlib.util
import json
import shutil
import sys

import fsspec
import numpy as np
import pytest
from etils.epath import gpath
from fsspec.implementations.memory import MemoryFileSystem

from vit_locality import sweep, train
from vit_locality.analysis.locality import DEFINITIONS
from vit_locality.analysis.results import (
    locality_scalars,
    write_locality,
    write_training_curves,
)
from vit_locality.cli import load_config
from vit_locality.errors import ConfigError, UserError
from vit_locality.evaluators import evaluator_options, locality_num_images, period_steps
from vit_locality.plan import StepPlan
from vit_locality.report import write_report
from vit_locality.validation import check_workdir, validate_config
from vit_locality.workdir import RunDir
from vit_locality.workdir.metrics import MetricWriter

from .conftest import CIFAR10_SAMPLE, cifar_locality_record
from .test_faults import tiny_config


def test_step_plan_of_a_config():
    config = tiny_config(6, warmup_epochs=0.5, eval_every_steps=None)
    config.total_steps, config.total_epochs = None, 2.0
    # 5,085 training images in batches of 64: 79 full batches per epoch
    assert StepPlan.from_config(config, 5085) == StepPlan(
        steps_per_epoch=79, total_steps=158, warmup_steps=40
    )
    assert period_steps(config.evals.classification, 79) == 79
    assert period_steps(config.evals.locality, 79) == 158  # analysis.every_epochs = 2 (smoke)


@pytest.mark.skipif(not (CIFAR10_SAMPLE / "test_batch.bin").exists(), reason="no CIFAR-10")
def test_a_run_without_the_locality_evaluator(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    config = tiny_config(4)
    del config.evals.locality
    result = train.train_and_evaluate(config, str(run_dir.path))
    assert json.loads(run_dir.plan_file.read_text()) == dataclasses.asdict(
        StepPlan.from_config(config, 5085)
    )
    assert json.loads(run_dir.config_file.read_text()) == config.to_dict()
    rows = run_dir.read_metrics()
    assert [r["step"] for r in rows if "val/prec@1" in r] == [4]
    assert not any(key.startswith("locality/") for row in rows for key in row)
    assert run_dir.read_locality() is None and not run_dir.plots_dir.exists()
    assert run_dir.is_finished() and result["step"] == 4 and "val/prec@1" in result


@pytest.mark.skipif(not (CIFAR10_SAMPLE / "test_batch.bin").exists(), reason="no CIFAR-10")
def test_a_run_with_the_locality_evaluator_only_is_finished_by_its_last_train_row(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    config = tiny_config(4)
    del config.evals.classification
    train.train_and_evaluate(config, str(run_dir.path))
    rows = run_dir.read_metrics()
    assert not any("val/prec@1" in row for row in rows)
    assert run_dir.read_locality()["step"] == 4
    assert run_dir.is_finished()
    run_dir.metrics_file.write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] < 4))
    assert not run_dir.is_finished()


@pytest.mark.parametrize("evals", ["", "classification,accuracy", "locality,locality"])
def test_evals_must_name_known_evaluators_once(evals):
    with pytest.raises(ConfigError) as error:
        validate_config(tiny_config(4, evals=evals), num_devices=1)
    assert str(error.value) == (
        f"config.evals={evals!r} is not allowed: a comma-separated subset of classification, "
        "locality"
    )


@pytest.mark.skipif(not (CIFAR10_SAMPLE / "test_batch.bin").exists(), reason="no CIFAR-10")
def test_a_workdir_saved_before_evaluators_were_dicts_resumes_and_reports(tmp_path):
    """config.json with the comma-separated `evals` string and plan.json with the evaluators'
    periods, as runs wrote them before: the run resumes under today's config, ends finished
    with both evaluators' rows, and reports."""
    run_dir = RunDir(tmp_path / "run")
    config = tiny_config(4, ckpt_every_steps=2)
    train.train_and_evaluate(config, str(run_dir.path))
    saved = run_dir.read_config()
    del saved["evals"]
    run_dir.config_file.write_text(json.dumps(saved | {"evals": "classification,locality"}))
    old_plan = json.loads(run_dir.plan_file.read_text())
    old_plan |= {"eval_every_steps": 4, "analysis_every_steps": 4}
    run_dir.plan_file.write_text(json.dumps(old_plan))
    assert run_dir.is_finished()
    # Cut back to a kill after checkpoint 2: its rows up to step 2 stay, checkpoint 4 is gone.
    rows = [r for r in run_dir.read_metrics() if r["step"] <= 2]
    run_dir.metrics_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    shutil.rmtree(run_dir.checkpoints_dir / "4")
    assert not run_dir.is_finished()

    result = train.train_and_evaluate(config, str(run_dir.path))
    assert result["step"] == 4 and "val/prec@1" in result
    assert "locality/min_mad_first_layer" in result
    assert run_dir.is_finished() and run_dir.read_locality()["step"] == 4
    assert (write_report([run_dir.path], tmp_path / "report")).is_file()


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda e: [delattr(e, name) for name in list(e)],
            "config.evals={} is not allowed: at least one of classification, locality",
        ),
        (
            lambda e: e.update(accuracy={}),
            "config.evals.accuracy.type='accuracy' is not allowed: one of 'classification', "
            "'locality' (the default is the name)",
        ),
        (
            lambda e: e.update(more=dict(type="locality", num_images=8)),
            "config.evals.more.type='locality' is not allowed: not the type of evals.locality "
            "again",
        ),
        (
            lambda e: e.classification.update(num_images=8),
            "config.evals.classification.num_images=8 is not allowed: an option of "
            "classification: every_steps, every_epochs",
        ),
        (
            lambda e: e.locality.update(every_epochs=0.0),
            "config.evals.locality.every_epochs=0.0 is not allowed: a positive finite number",
        ),
    ],
)
def test_each_evaluator_is_a_known_type_once_with_its_own_options(change, message):
    config = tiny_config(4)
    change(config.evals)
    with pytest.raises(ConfigError) as error:
        validate_config(config, num_devices=1)
    assert str(error.value) == message


def test_an_evaluator_entry_that_is_not_a_dict_is_one_line():
    config = tiny_config(4)
    config.evals.locality = None
    with pytest.raises(ConfigError) as error:
        validate_config(config, num_devices=1)
    assert str(error.value) == (
        "config.evals.locality=None is not allowed: a dict of options (del config.evals.NAME "
        "skips one)"
    )


def test_the_command_line_sets_every_option_of_an_evaluator_and_no_evals_string():
    spec = "configs/cifar10_modern.py"
    config = load_config(spec, {"evals.locality.every_steps": "5"})
    assert period_steps(evaluator_options(config)["locality"], 79) == 5
    config = load_config(spec, {"evals.classification.every_epochs": "0.5"})
    assert period_steps(evaluator_options(config)["classification"], 79) == 40
    with pytest.raises(UserError) as error:
        load_config(spec, {"evals": "classification"})
    assert str(error.value) == (
        "config.evals='classification' is not allowed: one field at a time, e.g. "
        "--config.evals.FIELD=VALUE"
    )


def test_the_images_analyze_takes_by_default_are_the_locality_evaluators():
    config = tiny_config(4)
    assert locality_num_images(config) == 16
    del config.evals.locality
    config.evals.late = dict(type="locality", num_images=40, every_epochs=2.0)
    assert locality_num_images(config) == 40
    saved = json.loads(config.to_json())
    assert locality_num_images(saved | {"evals": "classification"}) == 16  # the short name's


def test_a_locality_evaluator_needs_its_number_of_images():
    config = tiny_config(4)
    del config.evals.locality
    config.evals.analysis = dict(type="locality", every_steps=2)
    with pytest.raises(ConfigError) as error:
        validate_config(config, num_devices=1)
    assert str(error.value) == (
        "config.evals.analysis.num_images=None is not allowed: set for a locality evaluator"
    )


def test_the_short_names_are_the_evaluators_options():
    """`eval_every_steps` and `analysis.*` (what sweeps and the command line set) are the
    evaluators' options, not copies of them."""
    config = tiny_config(4)
    config.update({"eval_every_steps": 3})
    config.analysis.every_epochs = 0.5
    assert config.evals.classification.every_steps == 3
    assert config.evals.locality.every_epochs == 0.5
    config.evals.locality.num_images = 7
    assert config.analysis.num_images == 7


class _FakeGcs(MemoryFileSystem):
    """fsspec's in-memory filesystem under the gs:// scheme, without append (as GCS: an object
    opened to append is written anew)."""

    protocol = ("gs", "gcs")

    def __init__(self, *args, finalize_on_close=True, **kwargs):
        super().__init__(*args, **kwargs)

    def _open(self, path, mode="rb", **kwargs):
        return super()._open(path, mode.replace("a", "w"), **kwargs)


@pytest.fixture
def fake_gcs(monkeypatch):
    """gs:// paths of etils.epath (what RunDir, the plots and orbax use) served from memory:
    epath's fsspec backend instead of tf.io.gfile, with fsspec's memory filesystem as gs://."""
    for name in _FakeGcs.protocol:
        fsspec.register_implementation(name, _FakeGcs, clobber=True)
    monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
    _FakeGcs.store.clear()
    _FakeGcs.pseudo_dirs.clear()
    _FakeGcs.pseudo_dirs.append("")
    yield "gs://bucket"
    _FakeGcs.store.clear()


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
