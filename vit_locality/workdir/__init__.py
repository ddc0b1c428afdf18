"""The run directory: every file a run leaves in its workdir, and what they say.

    config.json    the resolved config, written before the first step
    plan.json      the step plan (`StepPlan`) derived from the config and the training set size
    metrics.jsonl  one JSON object per logged step (train, eval and locality rows)
    tensorboard/   the same scalars as event files
    checkpoints/   orbax step directories
    locality.json  the latest locality analysis
    plots/         figures
    lock.json      who is running in it (host, pid, since), while a run is (`lock.WorkdirLock`)

`RunDir` is the one place that knows these names. Train writes config.json and plan.json at the
start; sweep and report read whether a run is finished and its final step from plan.json.

Paths are `etils.epath.Path`s (what orbax uses), so a workdir is a local path or `gs://bucket/run`;
reaching GCS needs TensorFlow (its tf.io.gfile, in the default install) or gcsfs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
from typing import Any

import ml_collections
from etils import epath

from vit_locality.errors import UserError
from vit_locality.evaluator_options import ROW_KEYS, evaluator_options
from vit_locality.plan import StepPlan


def default_workdir(config_arg: str) -> str:
    """`configs/cifar100_modern.py:smoke` -> `runs/cifar100_modern_smoke`."""
    path, _, arg = config_arg.partition(":")
    name = pathlib.Path(path).stem
    suffix = "".join(c if c.isalnum() or c in "=.-" else "_" for c in arg)
    return str(pathlib.Path("runs") / (f"{name}_{suffix}" if arg else name))


class RunDir:
    """A workdir, read and written through the names of the module docstring."""

    def __init__(self, path: str | pathlib.Path | epath.Path):
        self.path = epath.Path(path)
        self.config_file = self.path / "config.json"
        self.plan_file = self.path / "plan.json"
        self.metrics_file = self.path / "metrics.jsonl"
        self.tensorboard_dir = self.path / "tensorboard"
        self.checkpoints_dir = self.path / "checkpoints"
        self.locality_file = self.path / "locality.json"
        self.plots_dir = self.path / "plots"
        self.lock_file = self.path / "lock.json"

    # ------------------------------------------------------------------ reading

    def holds_run(self) -> bool:
        return self.config_file.is_file()

    def read_config(self) -> dict[str, Any] | None:
        """config.json, or None when there is none."""
        return _read_json(self.config_file) if self.holds_run() else None

    def require_config(self) -> dict[str, Any]:
        """config.json; UserError when the directory holds no run."""
        if not self.holds_run():
            raise UserError(
                f"{self.path} holds no run (no config.json); --workdir must be a directory "
                "written by python -m vit_locality.main"
            )
        return _read_json(self.config_file)

    def read_plan(self) -> StepPlan | None:
        """plan.json, or None before a run has started (or for runs older than the file)."""
        if not self.plan_file.is_file():
            return None
        return StepPlan.from_json(_read_json(self.plan_file))

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every row of metrics.jsonl, in order (an empty list when there is none). A last line
        cut short (a disk that filled up mid-write) is left out; it is rewritten on resume."""
        if not self.metrics_file.is_file():
            return []
        lines = [line for line in self.metrics_file.read_text().splitlines() if line.strip()]
        rows = [json.loads(line) for line in lines[:-1]]
        try:
            return rows + [json.loads(line) for line in lines[-1:]]
        except json.JSONDecodeError:
            return rows

    def read_locality(self) -> dict[str, Any] | None:
        return _read_json(self.locality_file) if self.locality_file.is_file() else None

    def final_step(self) -> int | None:
        """The step the run ends at (plan.json), None before it has started."""
        plan = self.read_plan()
        return None if plan is None else plan.total_steps

    def is_finished(self) -> bool:
        """Whether metrics.jsonl holds the final step's train row and the row of every evaluator
        the config names (`val/prec@1`, `locality/...`): a run killed during its final
        evaluations is not finished."""
        final = self.final_step()
        if final is None:
            return False
        evals = evaluator_options(self.read_config() or {}).values()
        keys = ["train/loss", *(ROW_KEYS[options["type"]] for options in evals)]
        return set(keys) <= self.keys_at(final)

    def keys_at(self, step: int) -> set[str]:
        """Every key of metrics.jsonl's rows at `step`."""
        return {key for row in self.read_metrics() if row["step"] == step for key in row}

    # ------------------------------------------------------------------ writing (process 0)

    def write_start(self, config: ml_collections.ConfigDict, plan: StepPlan) -> None:
        """Creates the directory; writes config.json and plan.json."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(config.to_json(indent=2) + "\n")
        self.plan_file.write_text(json.dumps(dataclasses.asdict(plan), indent=2) + "\n")


def is_remote(path: str | pathlib.Path | epath.Path) -> bool:
    """Whether `path` is a URI (gs://, s3://, ...) rather than a local path."""
    return "://" in str(path)


def check_reachable(path: str | pathlib.Path | epath.Path) -> None:
    """Raises UserError when `path` is on GCS and neither TensorFlow nor gcsfs can reach it."""
    if str(path).startswith("gs://") and not any(
        importlib.util.find_spec(module) for module in ("tensorflow", "gcsfs")
    ):
        raise UserError(
            f"workdir {path}: reaching GCS needs TensorFlow or gcsfs, and neither is installed: "
            "pip install gcsfs"
        )


def _read_json(path: epath.Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}); move the workdir away") from e
