"""The run directory: what a run writes at its start (config.json, plan.json), whether it is
finished, and the evaluators `config.evals` chooses."""

import dataclasses
import json

import pytest

from vit_locality import train
from vit_locality.errors import ConfigError
from vit_locality.validation import validate_config
from vit_locality.workdir import RunDir, StepPlan

from .conftest import CIFAR10_SAMPLE
from .test_faults import tiny_config


def test_step_plan_of_a_config():
    config = tiny_config(6, warmup_epochs=0.5, eval_every_steps=None)
    config.total_steps, config.total_epochs = None, 2.0
    # 5,085 training images in batches of 64: 79 full batches per epoch
    assert StepPlan.from_config(config, 5085) == StepPlan(
        steps_per_epoch=79,
        total_steps=158,
        warmup_steps=40,
        eval_every_steps=79,
        analysis_every_steps=round(config.analysis.every_epochs * 79),
    )


@pytest.mark.skipif(not (CIFAR10_SAMPLE / "test_batch.bin").exists(), reason="no CIFAR-10")
def test_a_run_without_the_locality_evaluator(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    config = tiny_config(4, evals="classification")
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
    train.train_and_evaluate(tiny_config(4, evals="locality"), str(run_dir.path))
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
