"""One writer per workdir: a second run on a busy workdir stops before any compute with one line
naming the holder (real processes), and a holder that is gone does not block (same host: its
pid; another host: its heartbeat), on a local and on a gs:// workdir."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from vit_locality.errors import UserError
from vit_locality.workdir import RunDir, lock
from vit_locality.workdir.lock import Holder, WorkdirLock

from .conftest import CIFAR10_SAMPLE
from .helpers import ON_DEVICE, run, start


def busy_line(path, holder: Holder) -> str:
    return (
        f"workdir {path.parent} is in use by {holder.host} pid {holder.pid} since "
        f"{holder.since} ({path}); wait for it to end, or use another --workdir"
    )


def dead_pid() -> int:
    """The pid of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.skipif(not (CIFAR10_SAMPLE / "test_batch.bin").exists(), reason="no CIFAR-10")
def test_a_second_run_on_a_busy_workdir_stops_with_one_line_and_the_first_finishes(tmp_path):
    """The first run is held still (SIGSTOP) once it trains, so the second meets its lock
    however slowly the second starts; let go, the first finishes (a TINY run of 20 steps)."""
    workdir, steps = tmp_path / "run", 20
    first = start(workdir, f"--config.total_steps={steps}", *ON_DEVICE)
    for line in first.stdout:
        if line.startswith(f"step 10/{steps}"):
            break
    first.send_signal(signal.SIGSTOP)
    try:
        holder = Holder(**json.loads((workdir / "lock.json").read_text()))
        assert (holder.host, holder.pid) == (socket.gethostname(), first.pid)
        second = run(workdir, f"--config.total_steps={steps}", *ON_DEVICE)
    finally:
        first.send_signal(signal.SIGCONT)
    assert (second.returncode, second.stderr) == (
        2,
        f"error: {busy_line(workdir / 'lock.json', holder)}\n",
    )
    assert "Resuming" not in second.stdout and "step " not in second.stdout
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output[-3000:]
    rows = [r for r in RunDir(workdir).read_metrics() if "train/loss" in r]
    assert [r["step"] for r in rows] == [10, 20]
    assert not (workdir / "lock.json").exists()


def assert_refused_naming_its_holder_then_released(path) -> None:
    held = WorkdirLock.acquire(path)
    holder = Holder(**json.loads(path.read_text()))
    with pytest.raises(UserError) as error:
        WorkdirLock.acquire(path)
    assert str(error.value) == busy_line(path, holder)
    held.release()
    assert not path.exists()


def test_a_held_lock_is_refused_naming_its_holder_and_released(tmp_path):
    path = tmp_path / "run" / "lock.json"
    assert_refused_naming_its_holder_then_released(path)
    WorkdirLock.acquire(path).release()


def test_the_lock_of_a_process_that_is_gone_is_taken_over_with_one_line(tmp_path, capsys):
    path = tmp_path / "lock.json"
    gone = Holder(socket.gethostname(), dead_pid(), "2026-01-01T00:00:00+00:00", "")
    path.write_text(gone.to_json())
    WorkdirLock.acquire(path).release()
    assert capsys.readouterr().err == (
        f"warning: {path} was held by {gone.host} pid {gone.pid} since {gone.since}, which is "
        "gone; taking it over\n"
    )


@pytest.mark.parametrize(
    "whose, beat_age_s",
    [
        ("this process's", 0),  # a container restarted on this host: its killed predecessor's pid
        ("a live process's", 2 * lock.STALE_AFTER_S),  # a pid alive, a heartbeat long stopped
    ],
)
def test_a_lock_on_this_host_is_stale_without_its_holder(tmp_path, capsys, whose, beat_age_s):
    path = tmp_path / "lock.json"
    pid = os.getpid() if whose == "this process's" else os.getppid()
    beat = lock._iso(time.time() - beat_age_s)
    path.write_text(Holder(socket.gethostname(), pid, beat, beat).to_json())
    WorkdirLock.acquire(path).release()
    assert capsys.readouterr().err.endswith("which is gone; taking it over\n")


def test_another_hosts_lock_holds_while_its_heartbeat_is_recent(tmp_path):
    path = tmp_path / "lock.json"
    recent = lock._iso(time.time() - lock.STALE_AFTER_S / 2)
    elsewhere = Holder("another-host", 1, recent, recent)
    path.write_text(elsewhere.to_json())
    with pytest.raises(UserError, match="is in use by another-host pid 1"):
        WorkdirLock.acquire(path)
    old = lock._iso(time.time() - 2 * lock.STALE_AFTER_S)
    path.write_text(Holder("another-host", 1, old, old).to_json())
    WorkdirLock.acquire(path).release()


def test_the_holder_beats_while_it_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.05)
    path = tmp_path / "lock.json"
    held = WorkdirLock.acquire(path)
    first = Holder(**json.loads(path.read_text()))
    deadline = time.time() + 120  # only against waiting for ever: the event is a new beat
    while Holder(**json.loads(path.read_text())).heartbeat == first.heartbeat:
        assert time.time() < deadline, "no heartbeat within 120 s"
        time.sleep(0.1)
    held.release()


def test_a_gcs_workdir_is_locked_too(fake_gcs, monkeypatch):  # noqa: F811
    monkeypatch.setattr(lock, "SETTLE_S", 0.0)
    assert_refused_naming_its_holder_then_released(RunDir(f"{fake_gcs}/runs/a").lock_file)
