"""The evaluators `config.evals` chooses: their types, options and short names (eval_every_steps,
analysis.*), as the config, the command line and a run use them, and a workdir saved before they
were dicts."""

import dataclasses
import json
import shutil

import pytest

from vit_locality import train
from vit_locality.cli import load_config
from vit_locality.errors import ConfigError, UserError
from vit_locality.evaluator_options import evaluator_options, locality_num_images, period_steps
from vit_locality.plan import StepPlan
from vit_locality.report import write_report
from vit_locality.validation import validate_config
from vit_locality.workdir import RunDir

from .conftest import CIFAR10_SAMPLE
from .helpers import tiny_config


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
