"""Several processes train one model (JAX's multi-controller runtime on the CPU, gloo
collectives), as real processes: 2 processes x 2 devices end where 1 process x 4 devices ends,
write each row once, and stop together on a SIGTERM to either of them."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from vit_locality.workdir import RunDir

from .conftest import CIFAR10_SAMPLE, REPO_ROOT
from .test_train_e2e import TINY

pytestmark = pytest.mark.skipif(
    not (CIFAR10_SAMPLE / "test_batch.bin").exists(), reason="real CIFAR-10 sample absent"
)
SHORT = ["--config.total_steps=20", "--config.eval_every_steps=10", "--config.log_every_steps=5"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(workdir, processes, devices_each, *extra):
    """`processes` processes of `python -m vit_locality.main` on one run, each with
    `devices_each` CPU devices; one process runs without --multihost."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_each}"}
    command = [sys.executable, "-m", "vit_locality.main", *TINY, f"--workdir={workdir}", *extra]
    if processes == 1:
        return [subprocess.Popen(command, cwd=REPO_ROOT, env=env, **_PIPES)]
    env |= {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}", "JAX_NUM_PROCESSES": "2"}
    return [
        subprocess.Popen(
            [*command, "--multihost"],
            cwd=REPO_ROOT,
            env={**env, "JAX_PROCESS_ID": str(i)},
            **_PIPES,
        )
        for i in range(processes)
    ]


_PIPES = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}


def finish(processes, timeout=240):
    outputs = [p.communicate(timeout=timeout)[0] for p in processes]
    for p, output in zip(processes, outputs, strict=True):
        assert p.returncode == 0, output[-3000:]
    return outputs


def without_speed(rows):
    return [{k: v for k, v in row.items() if k != "train/img_per_s"} for row in rows]


def test_two_processes_train_as_one_process_with_as_many_devices(tmp_path):
    """Same global mesh of 4 devices and the same per-device rows; only the order of the
    cross-process sums differs (gloo against XLA's in-process all-reduce), which moves float32
    gradient norms in their 6th digit: losses within 1e-5, accuracies equal."""
    one, two = tmp_path / "one", tmp_path / "two"
    finish(start(one, 1, 4, *SHORT))
    out0, out1 = finish(start(two, 2, 2, *SHORT))
    rows_one, rows_two = RunDir(one).read_metrics(), RunDir(two).read_metrics()
    assert [sorted(r) for r in without_speed(rows_two)] == [
        sorted(r) for r in without_speed(rows_one)
    ]  # every row once: process 1 writes none
    for a, b in zip(without_speed(rows_one), without_speed(rows_two), strict=True):
        for key in a:
            if key.startswith("val/prec"):
                assert a[key] == b[key], key
            else:
                assert b[key] == pytest.approx(a[key], rel=1e-5), (a["step"], key)
    assert "eval at step 20" in out0 and "eval at step" not in out1
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["20"]  # every 20 steps


def test_a_sigterm_to_one_process_stops_both_at_the_same_step_and_a_rerun_finishes(tmp_path):
    workdir = tmp_path / "run"
    long = [
        "--config.total_steps=300",
        "--config.log_every_steps=5",
        "--config.eval_every_steps=1000",
    ]
    processes = start(workdir, 2, 2, *long)
    for line in processes[0].stdout:  # training has started on both: a collective ran
        if line.startswith("step 10/300"):
            break
    processes[1].send_signal(signal.SIGTERM)
    out0, out1 = finish(processes)
    saved = int(out0.split("SIGTERM: saved step ")[1].split(";")[0])
    assert 10 < saved < 300 and saved % 5 == 0  # agreed at a log step
    assert "SIGTERM" not in out1
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir())[-1] == str(saved)

    out0, _ = finish(start(workdir, 2, 2, *long))
    assert f"Resuming {workdir} from step {saved}/300" in out0
    assert "eval at step 300" in out0
    assert json.loads((workdir / "plan.json").read_text())["total_steps"] == 300


def test_a_coordinator_that_does_not_answer_is_one_line(tmp_path):
    workdir = tmp_path / "run"
    env = {
        **os.environ,
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}",
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "vit_locality.main", *TINY, f"--workdir={workdir}", "--multihost",
         "--coordinator_timeout=2"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    address = env["JAX_COORDINATOR_ADDRESS"]
    assert (result.returncode, result.stderr) == (
        2,
        f"error: --multihost: the coordinator at {address} did not answer within 2 s (process 1 "
        "of 2); start process 0 there, or fix JAX_COORDINATOR_ADDRESS\n",
    )
    assert not workdir.exists()


def test_an_incomplete_process_environment_is_one_line(tmp_path):
    workdir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env |= {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "vit_locality.main", *TINY, f"--workdir={workdir}", "--multihost"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (
        2,
        "error: --multihost: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID go "
        "together; JAX_PROCESS_ID is not set\n",
    )
    assert not workdir.exists()
