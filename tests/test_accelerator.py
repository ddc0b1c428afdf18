"""`benchmarks/accelerator.py --tiny`: the GPU check's code paths on this CPU, so the script
cannot rot between GPU runs (no torch here: the timm rows are left out, as on a machine
without it)."""

import json
import os
import subprocess
import sys

import pytest

from .conftest import FASHION_MNIST, REPO_ROOT, SHARED_DATA

pytestmark = pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Fashion-MNIST absent")
TRAIN_STEP_KEYS = {
    "name",
    "framework",
    "mode",
    "dtype",
    "batch_size",
    "image_size",
    "img_per_s",
    "mfu",
    "device_kind",
}


def test_the_accelerator_check_writes_every_result(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    command = [sys.executable, "benchmarks/accelerator.py", "--tiny", f"--out={tmp_path}"]
    result = subprocess.run(
        [*command, f"--data={SHARED_DATA}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt", "results.jsonl"]
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    names = [row["name"] for row in rows]
    assert names == ["env", "pytest", "train_step", "end_to_end", "locality_pass", "done"]
    env_row, pytest_row, step, e2e, local, _ = rows
    assert env_row["device_kind"] == "cpu" and env_row["versions"]["jax"]
    assert pytest_row["passed"] > 0 and pytest_row["failed"] == pytest_row["errors"] == 0
    assert TRAIN_STEP_KEYS <= set(step) and (step["framework"], step["mode"]) == ("jax", "jit")
    assert step["windows"] == 2 and step["img_per_s"] > 0
    assert e2e["img_per_s"] > 0 and e2e["step_alone_img_per_s"] > 0
    assert isinstance(e2e["input_bound"], bool)
    assert local["image_size"] == 32 and local["img_per_s"] > 0
    log = (tmp_path / "log.txt").read_text()
    assert "timm_step.py" in log and "pip install torch timm" in log  # the twin, skipped
