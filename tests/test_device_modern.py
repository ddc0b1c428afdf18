"""The Modern protocol with the input on the device (`data.on_device=True`: crop, flip and
AutoAugment in JAX), as real processes in which importing TensorFlow fails: it trains, and a run
killed and started again ends with the parameters of one that never stopped. One CPU device."""

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from vit_locality.workdir import RunDir

from .conftest import CIFAR10_SAMPLE, REPO_ROOT
from .helpers import TINY, final_params, wait_for_checkpoint

pytestmark = pytest.mark.skipif(
    not (CIFAR10_SAMPLE / "test_batch.bin").exists(), reason="real CIFAR-10 sample absent"
)
# `python -m vit_locality.main` where `import tensorflow` (or tensorflow_datasets) raises
# ImportError, as on a machine without it.
WITHOUT_TENSORFLOW = """
import importlib.machinery, runpy, sys
class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        raise ImportError(f"no {spec.name} here")
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, NoTensorFlow())
sys.argv = sys.argv[1:]
runpy.run_module("vit_locality.main", run_name="__main__")
assert "tensorflow" not in sys.modules
"""
MODERN = [*TINY, "--config.aug.autoaugment=True", "--config.data.on_device=True"]
ENV = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}


def command(workdir):
    main = ["vit_locality.main", *MODERN, f"--workdir={workdir}"]
    return [sys.executable, "-c", WITHOUT_TENSORFLOW, *main]


def run(workdir):
    result = subprocess.run(
        command(workdir), cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("runs") / "modern_on_device"
    return workdir, run(workdir)


def test_modern_on_device_trains_without_tensorflow(uninterrupted):
    workdir, result = uninterrupted
    config = RunDir(workdir).read_config()
    assert config["aug"]["autoaugment"] and config["data"]["on_device"]
    assert "eval at step 60" in result.stdout
    rows = [r for r in RunDir(workdir).read_metrics() if "train/loss" in r]
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]


def test_sigkill_then_rerun_ends_identical(uninterrupted, tmp_path):
    reference, _ = uninterrupted
    workdir = tmp_path / "killed"
    process = subprocess.Popen(
        command(workdir), cwd=REPO_ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    wait_for_checkpoint(workdir, 20, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert "Resuming" in run(workdir).stdout
    jax.tree.map(np.testing.assert_array_equal, final_params(workdir), final_params(reference))
