"""Several processes train one model (JAX's multi-controller runtime on the CPU, gloo
collectives), as real processes: 2 processes x 1 device end where 1 process x 2 devices ends,
writing each row once (tf.data input, sharded by process); 2 processes stop together on a SIGTERM
to either of them whatever the log period and a rerun finishes, and a stopped one ends the other
in one line (input on the device, one device each: what the loop agrees on whatever feeds it);
with 2 devices each, a SIGTERM before the first step stops both, and no process returns before
process 0 has written the run."""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from vit_locality.workdir import RunDir

from .conftest import CIFAR10_SAMPLE, REPO_ROOT
from .helpers import ON_DEVICE, TINY, saved_step, without_speed

pytestmark = pytest.mark.skipif(
    not (CIFAR10_SAMPLE / "test_batch.bin").exists(), reason="real CIFAR-10 sample absent"
)


def schedule(total_steps: int, log_every: int = 5, eval_every: int | None = 1000) -> list[str]:
    """The run's length and periods as flags (eval_every None: the config's)."""
    flags = [f"--config.total_steps={total_steps}", f"--config.log_every_steps={log_every}"]
    return flags + ([f"--config.eval_every_steps={eval_every}"] if eval_every else [])


SHORT = schedule(20, eval_every=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(workdir, processes, devices_each, *extra, main=("-m", "vit_locality.main")):
    """`processes` processes of `python -m vit_locality.main` (or of `python *main`) on one run,
    each with `devices_each` CPU devices; one process runs without --multihost."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_each}"}
    command = [sys.executable, *main, *TINY, f"--workdir={workdir}", *extra]
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


def test_two_processes_train_as_one_process_with_as_many_devices(tmp_path):
    """Same global mesh and the same per-device rows. The cross-device sums (gradients, losses,
    eval counts) run in another order across processes (gloo) than within one (XLA), but with
    two devices each has two addends, and float addition is commutative: every row is equal,
    bit for bit, whatever the CPU (with more devices the sums' association differs, and so do
    the float32 results, by an amount no tolerance bounds on every CPU)."""
    one, two = tmp_path / "one", tmp_path / "two"
    finish(start(one, 1, 2, *SHORT))
    out0, out1 = finish(start(two, 2, 1, *SHORT))
    rows_one, rows_two = RunDir(one).read_metrics(), RunDir(two).read_metrics()
    assert without_speed(rows_two) == without_speed(rows_one)  # every row once: process 1 none
    assert "eval at step 20" in out0 and "eval at step" not in out1
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["20"]  # every 20 steps


def test_a_sigterm_to_one_process_stops_both_at_the_same_step_and_a_rerun_finishes(tmp_path):
    """SIGTERM to process 1 once both train (a checkpoint is committed), with log_every_steps
    beyond the run's end so that no log step paces the agreement: both processes save the same
    step within seconds and exit 0; the rerun resumes there and finishes."""
    workdir = tmp_path / "run"
    long = schedule(400, log_every=1000)  # agreeing takes ~2 s: 20-200 TINY steps
    processes = start(workdir, 2, 1, *long, *ON_DEVICE)
    checkpoint = workdir / "checkpoints" / "20"  # TINY saves every 20 steps: training runs
    deadline = time.monotonic() + 240  # only against waiting for ever: the event is the file
    while not checkpoint.is_dir():
        assert all(p.poll() is None for p in processes) and time.monotonic() < deadline
        time.sleep(0.05)
    processes[1].send_signal(signal.SIGTERM)
    out0, out1 = finish(processes)
    assert "SIGTERM: saved step " in out0, out0[-3000:]
    saved = saved_step(out0)
    assert 20 <= saved < 400  # stopped before the run's end, at a step both derived alike
    assert "SIGTERM" not in out1
    assert committed(workdir)[-1] == saved

    out0, _ = finish(start(workdir, 2, 1, *long, *ON_DEVICE))
    assert f"Resuming {workdir} from step {saved}/400" in out0
    assert "eval at step 400" in out0
    assert json.loads((workdir / "plan.json").read_text())["total_steps"] == 400


def test_a_sigterm_before_the_first_step_stops_both_processes_cleanly(tmp_path):
    """SIGTERM to process 0 while it restores and compiles (its lock is taken, no step run):
    both processes stop at the first agreement and exit 0; the rerun trains."""
    workdir = tmp_path / "run"
    processes = start(workdir, 2, 2, *SHORT)
    deadline = time.time() + 240
    while not (workdir / "lock.json").exists():
        assert all(p.poll() is None for p in processes) and time.time() < deadline
        time.sleep(0.01)
    processes[0].send_signal(signal.SIGTERM)
    out0, _ = finish(processes)
    assert "SIGTERM before step 1: nothing new to save" in out0
    assert committed(workdir) == []
    out0, _ = finish(start(workdir, 2, 2, *SHORT))
    assert "eval at step 20" in out0


def committed(workdir) -> list[int]:
    """The committed checkpoint steps, in order."""
    checkpoints = workdir / "checkpoints"
    names = [p.name for p in checkpoints.iterdir()] if checkpoints.is_dir() else []
    return sorted(int(name) for name in names if name.isdigit())


# `python -m vit_locality.main` where the cross-process equality check that `jax.device_put` of a
# host array onto several processes' devices runs (an all-gather of the array) fails.
WITHOUT_EQUALITY_CHECKS = """
import runpy, sys
from jax.experimental import multihost_utils
check = multihost_utils.assert_equal
def refuse(value, fail_message=""):
    if "device_put" in fail_message:
        raise AssertionError("host data all-gathered across processes by device_put")
    return check(value, fail_message)
multihost_utils.assert_equal = refuse
sys.argv = sys.argv[1:]
runpy.run_module("vit_locality.main", run_name="__main__")
"""


def test_on_device_input_on_two_processes_places_only_its_own_copies(tmp_path):
    """data.on_device with 2 processes (1 device each, see docs/architecture.md, Tests): the
    training set and each step's number are placed by each process on its own device, with no
    all-gather."""
    main = ("-c", WITHOUT_EQUALITY_CHECKS, "vit_locality.main")
    on_device = [*SHORT, *ON_DEVICE]
    out0, _ = finish(start(tmp_path / "run", 2, 1, *on_device, main=main))
    assert "eval at step 20" in out0


# `python -m vit_locality.main` whose process 0, when it redraws the training curves (the last
# thing it writes before the final locality row), first creates the file argv[1] + ".held" and
# waits until the file argv[1] + ".go" exists.
HELD_LAST_WRITES = """
import os, runpy, sys, time
from vit_locality.evaluators import locality as evaluators
hold = sys.argv.pop(1)
draw = evaluators.write_training_curves
def held(run_dir):
    open(hold + ".held", "w").close()
    deadline = time.monotonic() + 600  # only against waiting for ever
    while not os.path.exists(hold + ".go") and time.monotonic() < deadline:
        time.sleep(0.05)
    return draw(run_dir)
evaluators.write_training_curves = held
sys.argv = sys.argv[1:]
runpy.run_module("vit_locality.main", run_name="__main__")
"""


def test_no_process_returns_before_process_0_has_written_the_run(tmp_path):
    """What `sweep --multihost` reads on each worker once its process returns: the run is
    finished there (its final rows written, its lock released), not only on process 0. Process
    0 is held in its last write until the test lets it go: process 1 is still running then,
    and once it returns the run is finished."""
    workdir, hold = tmp_path / "run", str(tmp_path / "hold")
    main = ("-c", HELD_LAST_WRITES, hold, "vit_locality.main")
    processes = start(workdir, 2, 2, *SHORT, main=main)
    deadline = time.monotonic() + 300  # only against waiting for ever: the event is the file
    while not os.path.exists(hold + ".held"):
        assert all(p.poll() is None for p in processes) and time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(subprocess.TimeoutExpired):  # a process 1 that returned early, found
        processes[1].wait(timeout=5)
    pathlib.Path(hold + ".go").touch()
    processes[1].wait(timeout=300)
    assert RunDir(workdir).is_finished() and not (workdir / "lock.json").exists()
    finish(processes)


def test_a_collective_that_cannot_complete_ends_the_run_in_one_line(tmp_path):
    """Process 1 stops (SIGSTOP) mid-run: process 0, waiting in a collective, ends within the
    timeout with one line naming the step, exit 1, instead of blocking for ever."""
    long = [*schedule(300, eval_every=None), "--collective_timeout=10"]
    processes = start(tmp_path / "run", 2, 1, *long, *ON_DEVICE)
    for line in processes[0].stdout:
        if line.startswith("step 10/300"):
            break
    processes[1].send_signal(signal.SIGSTOP)
    try:
        output, _ = processes[0].communicate(timeout=120)
    finally:
        processes[1].kill()
        processes[1].wait()
    assert processes[0].returncode == 1, output[-3000:]
    assert re.fullmatch(
        r"error: step \d+: the processes did not all get past it within 10 s \(a process "
        r"stopped, died or hangs in a collective\); committed checkpoints are kept: run again "
        r"to resume",
        output.strip().splitlines()[-1],
    ), output[-3000:]


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
