"""Faults and hidden costs of the train loop, with the real data: the steady-state step does no
implicit host transfer and compiles once; unwritable workdirs, corrupt or half-written checkpoints
and a full disk (simulated, and a real tmpfs filled up) end in one line (exit 2) or a clean
resume, never in a damaged workdir."""

import errno
import gc
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorstore as ts

from vit_locality import analyze, train, train_state
from vit_locality.data.sources import load_split
from vit_locality.errors import UserError
from vit_locality.models import build_model
from vit_locality.parallel import sharding
from vit_locality.workdir import RunDir, checkpointing

from .conftest import CIFAR10_SAMPLE, REPO_ROOT
from .helpers import command, last_line, logged_compiles, run, tiny_config

pytestmark = pytest.mark.skipif(
    not (CIFAR10_SAMPLE / "test_batch.bin").exists(), reason="real CIFAR-10 sample absent"
)


NO_SPACE = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
NO_ACCESS = OSError(errno.EACCES, os.strerror(errno.EACCES))
TENSORSTORE_FULL = ValueError("RESOURCE_EXHAUSTED: Failed writing [os_error_code='28']")
ORBAX_FILE = "/site-packages/orbax/checkpoint/_src/futures/future.py"


# The CLI's TINY run (helpers.TINY) with the committed fixture's schedule: it resumes it.
RESUME = (
    "--config.total_steps=8",
    "--config.ckpt_every_steps=2",
    "--config.warmup_epochs=0",
)


def test_train_step_compiles_once_and_moves_nothing_implicitly(committed):
    """The loop's step runs under `jax.transfer_guard("disallow")`: the run finishing shows no
    implicit transfer; jax_log_compiles shows one compilation of the step for all its steps."""
    compiles = step_compiles(committed[1])
    assert len(compiles) == 1, compiles


def test_a_resumed_run_compiles_the_step_once(copied):
    """The restored state has the shapes, dtypes and shardings of a fresh one: resuming
    compiles the step once, not once for the restored state and again for its successors."""
    with logged_compiles() as messages:
        result = train.train_and_evaluate(tiny_config(8, ckpt_every_steps=2), str(copied))
    assert result["step"] == 8
    compiles = step_compiles(messages)
    assert len(compiles) == 1, compiles


def test_the_step_guard_rejects_an_implicit_host_transfer(tmp_path, monkeypatch):
    """Host (NumPy) batches reach the step: the loop's transfer guard stops the run."""
    config = tiny_config(6)
    images, labels = load_split(config, "train")

    def host_batches(*args, **kwargs):
        while True:
            yield {"image": images[:64], "label": labels[:64]}

    monkeypatch.setattr(train, "_train_input", host_batches)
    with pytest.raises(jax.errors.JaxRuntimeError, match="Disallowed host-to-device transfer"):
        train.train_and_evaluate(config, str(tmp_path / "run"))


def step_compiles(messages: list[str]) -> list[str]:
    """The step's executables made: compiled, or loaded from the persistent compilation cache
    (the tests share one, see conftest.py), which logs its hit instead of a compilation."""
    made = ("compilation of jit(train_step)", "cache hit for 'jit_train_step'")
    return [m for m in messages if any(marker in m for marker in made)]


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """An 8-step run of the TINY model killed after step 4: checkpoints at steps 2 and 4 (those
    of steps 6 and 8 removed), and the compilation messages its training logged."""
    workdir = tmp_path_factory.mktemp("runs") / "committed"
    config = tiny_config(8, ckpt_every_steps=2, kept_checkpoints=4)
    with logged_compiles() as messages:
        result = train.train_and_evaluate(config, str(workdir))
    assert result["step"] == 8
    for step in ("6", "8"):
        shutil.rmtree(workdir / "checkpoints" / step)
    return workdir, messages


@pytest.fixture
def copied(committed, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(committed[0], workdir)
    return workdir


def test_unwritable_workdir_fails_before_any_compute(tmp_path):
    parent = tmp_path / "readonly"
    parent.mkdir()
    parent.chmod(0o500)
    if os.access(parent, os.W_OK):  # root ignores the mode: a path under a regular file instead
        parent = tmp_path / "a_file"
        parent.write_text("")
    result = run(parent / "run")
    assert last_line(result) == (
        f"error: workdir {parent / 'run'}: {parent} is not a writable directory; "
        "use another --workdir"
    )
    assert "Compiling" not in result.stdout and not (parent / "run").exists()


def value_files(checkpoint) -> dict[pathlib.Path, int]:
    """Each data file holding the array values of `checkpoint` (a step directory), with the end
    of the last value in it, as the checkpoint's OCDBT index says. The other files under `d/`
    hold the per-process index that orbax merged into `state/d/` when it committed: a restore
    does not read them, so damaging them damages nothing."""
    state = checkpoint / "state"
    store = ts.KvStore.open({"driver": "file", "path": f"{state}/"}).result()
    version = ts.ocdbt.dump(store).result()["versions"][-1]
    assert version["root_height"] == 0  # the TINY state's index is one leaf node
    ends: dict[pathlib.Path, int] = {}
    for entry in ts.ocdbt.dump(store, version["root"]["location"]).result()["entries"]:
        if "indirect_value" in entry:  # "value:<prefix>:<file>:<offset>:<length>"
            where, file, offset, length = entry["indirect_value"].rsplit(":", 3)
            path = state / where.partition(":")[2] / file
            ends[path] = max(ends.get(path, 0), int(offset) + int(length))
    return ends


def flip(path, positions):
    raw = bytearray(path.read_bytes())
    for i in positions:
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def largest_value_file(checkpoint) -> tuple[pathlib.Path, int]:
    return max(value_files(checkpoint).items(), key=lambda item: item[1])


def first_bytes_of_every_data_file(checkpoint):
    """Bit rot at the start of each file: the first values' zstd frames do not decode."""
    for path in value_files(checkpoint):
        flip(path, range(64))


def bytes_spread_through_the_largest(checkpoint):
    """One byte in every 512 of the values in the file holding most of them."""
    path, end = largest_value_file(checkpoint)
    flip(path, range(0, end, 512))


def a_truncated_file(checkpoint):
    """A copy that stopped half-way through the values of that file."""
    path, end = largest_value_file(checkpoint)
    os.truncate(path, end // 2)


def a_missing_file(checkpoint):
    path, _ = largest_value_file(checkpoint)
    path.unlink()


CORRUPTIONS = [
    first_bytes_of_every_data_file,
    bytes_spread_through_the_largest,
    a_truncated_file,
    a_missing_file,
]


def warning_moved(checkpoint) -> str:
    """The one line of a resumed run that set `checkpoint` aside (the reason in parentheses)."""
    path = re.escape(str(checkpoint))
    return rf"warning: checkpoint {path} cannot be restored \(.+\); moved to {path}\.corrupt\n"


def test_a_corrupt_checkpoint_is_named_set_aside_and_the_run_resumes_from_the_one_before(copied):
    """Checkpoint 4's data is corrupt: the run's whole stderr, in a real process (the garbage
    collected whenever the run allocates, what Python prints from it printed), is one line
    naming it; it is moved to 4.corrupt, the run resumes from step 2 and finishes, each step
    logged once."""
    checkpoint = copied / "checkpoints" / "4"
    first_bytes_of_every_data_file(checkpoint)
    result = run(copied, *RESUME)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.fullmatch(warning_moved(checkpoint), result.stderr), result.stderr[-3000:]
    assert f"Resuming {copied} from step 2/8" in result.stdout
    assert committed_steps(copied / "checkpoints") == ["4", "6", "8"]
    assert (copied / "checkpoints" / "4.corrupt").is_dir()
    rows = [r for r in RunDir(copied).read_metrics() if "train/loss" in r]
    assert [r["step"] for r in rows] == [2, 4, 6, 8]


@pytest.mark.parametrize("damage", CORRUPTIONS, ids=lambda damage: damage.__name__)
def test_analyze_names_a_corrupt_checkpoint_and_analyses_the_one_before(
    copied, damage, capfd, monkeypatch
):
    """Checkpoint 4 damaged each way (restored by the same code as the resumed run's above):
    the whole stderr, read after the garbage is collected and with what Python prints from a
    collected object printed (not gathered by pytest), is one line naming it; step 2 is
    analysed. Asked for step 4 itself, one error names it."""
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    checkpoint = copied / "checkpoints" / "4"
    damage(checkpoint)
    capfd.readouterr()
    assert analyze.analyze_run(copied, num_images=8)["step"] == 2
    gc.collect()
    err = capfd.readouterr().err
    path = re.escape(str(checkpoint))
    assert re.fullmatch(rf"warning: checkpoint {path} cannot be restored \(.+\); analysing the "
                        r"one before it\n", err), err  # fmt: skip
    with pytest.raises(checkpointing.UnreadableCheckpoint, match=f"^checkpoint {path} "):
        analyze.analyze_run(copied, step=4, num_images=8)
    gc.collect()
    assert capfd.readouterr().err == ""


def test_a_checkpoint_that_decodes_to_non_finite_numbers_is_unreadable(copied):
    """Only finite states are saved, so NaNs in a restored one are corruption tensorstore did not
    detect (flipped bytes inside zstd's compressed blocks)."""
    config = tiny_config(8)
    model = build_model(config)
    _, tx = train_state.optimizer(config)
    like = train_state.abstract_state(config, model, tx, sharding.make_mesh())
    ckpt = checkpointing.Checkpointer(copied / "checkpoints", keep=3)
    state, _ = ckpt.restore(4, like)
    nan_state = state.replace(params=jax.tree.map(lambda x: x * np.nan, state.params))
    ckpt.save(5, nan_state, {"step": 5})
    ckpt.wait()
    with pytest.raises(checkpointing.UnreadableCheckpoint) as error:
        ckpt.restore(5, like)
    ckpt.close()
    assert str(error.value) == (
        f"checkpoint {copied / 'checkpoints' / '5'} cannot be restored (it holds non-finite "
        "numbers, which are never saved)"
    )


def test_half_written_checkpoint_is_never_restored(copied, capsys):
    checkpoints = copied / "checkpoints"
    (checkpoints / "4").rename(checkpoints / "4.orbax-checkpoint-tmp-1700000000")
    result = train.train_and_evaluate(tiny_config(8, ckpt_every_steps=2), str(copied))
    assert f"Resuming {copied} from step 2/8" in capsys.readouterr().out
    assert result["step"] == 8
    assert ocp.CheckpointManager(checkpoints).latest_step() == 8


def test_full_disk_stops_with_one_line_and_keeps_the_last_checkpoint(copied, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ocp.CheckpointManager, "save", no_space)
    with pytest.raises(UserError) as e:
        train.train_and_evaluate(tiny_config(8, ckpt_every_steps=2), str(copied))
    assert str(e.value) == (
        f"saving a checkpoint in {copied / 'checkpoints'} failed (No space left on device); the "
        "last committed one (step 4) is kept: free space and run again to resume"
    )
    assert sorted(p.name for p in (copied / "checkpoints").iterdir()) == ["2", "4"]
    params = ocp.PyTreeCheckpointer().restore(copied / "checkpoints" / "4" / "state")["params"]
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


@pytest.fixture
def small_disk(tmp_path):
    """A real 16 MiB filesystem (tmpfs) at tmp_path/disk; skipped where mounting is refused."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)]
    result = subprocess.run(mount, capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=True)


def fill(disk, leave_bytes: int):
    """Fills `disk` up to `leave_bytes` free bytes with one file, `disk/filler`."""
    (disk / "filler").write_bytes(bytes(shutil.disk_usage(disk).free - leave_bytes))


def committed_steps(checkpoints):
    return sorted(p.name for p in checkpoints.iterdir() if p.name.isdigit())


def test_a_save_that_cannot_fit_is_refused_before_it_starts(committed, small_disk):
    """Real processes on a real full disk: the CLI stops at the save with one line naming the
    room needed and free, exit 2, steps 2 and 4 intact and no half-written step directory."""
    workdir = small_disk / "run"
    shutil.copytree(committed[0], workdir)
    fill(small_disk, leave_bytes=256 * 1024)
    result = run(workdir, *RESUME)
    checkpoints = workdir / "checkpoints"
    assert re.fullmatch(
        rf"error: saving a checkpoint in {checkpoints} needs up to [\d.]+ MiB but 0\.\d MiB are "
        r"free; the last committed one \(step 4\) is kept: free space and run again to resume",
        last_line(result),
    ), last_line(result)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["2", "4"]


# `python -m vit_locality.main` with the room check fooled (shutil.disk_usage reports /tmp's free
# space): the save starts on the full disk and fails in orbax's background thread, as it does
# when the disk fills up while a checkpoint is being written.
FOOLED_ROOM_CHECK = (
    "import runpy, shutil, sys; real = shutil.disk_usage; "
    "shutil.disk_usage = lambda path: real('/tmp'); sys.argv = sys.argv[1:]; "
    "runpy.run_module('vit_locality.main', run_name='__main__')"
)


def test_a_disk_that_fills_during_a_background_save_ends_in_one_line_and_resumes(
    committed, small_disk
):
    """tensorstore's write fails in orbax's background thread; the next save reports it: the
    whole stderr is one line (orbax's and asyncio's tracebacks are dropped), exit 2. The last
    committed checkpoint restores, and once space is freed the run resumes and finishes."""
    workdir = small_disk / "run"
    shutil.copytree(committed[0], workdir)
    fill(small_disk, leave_bytes=64 * 1024)
    main_args = command(workdir, *RESUME)[3:]
    result = subprocess.run(
        [sys.executable, "-c", FOOLED_ROOM_CHECK, "vit_locality.main", *main_args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    checkpoints = workdir / "checkpoints"
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr == (
        f"error: saving a checkpoint in {checkpoints} failed (No space left on device); the "
        "last committed one (step 4) is kept: free space and run again to resume\n"
    )
    assert committed_steps(checkpoints) == ["2", "4"]
    assert ocp.CheckpointManager(checkpoints).latest_step() == 4

    (small_disk / "filler").unlink()
    assert train.train_and_evaluate(tiny_config(8, ckpt_every_steps=2), str(workdir))["step"] == 8
    assert sorted(p.name for p in checkpoints.iterdir()) == ["4", "6", "8"]  # kept_checkpoints=3


# What a save that failed mid-write leaves behind, in a real process: tensorstore's write coroutine
# never awaited (Python warns when it is collected), next to another coroutine of the same fate.
UNAWAITED = """
from vit_locality.workdir.checkpointing import quiet_failed_saves
quiet_failed_saves()
def async_serialize_from_host():
    async def write_fragment():
        pass
    return write_fragment()
async def elsewhere():
    pass
async_serialize_from_host()
elsewhere()
"""


def test_the_unawaited_write_of_a_failed_save_adds_no_line_and_other_warnings_stay():
    """The flaky line of a disk that fills during a background save: with orbax's write
    coroutine never awaited, Python printed a RuntimeWarning and tracemalloc's hint."""
    result = subprocess.run(
        [sys.executable, "-c", UNAWAITED], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "write_fragment" not in result.stderr
    assert "coroutine 'elsewhere' was never awaited" in result.stderr


def test_a_full_disk_while_writing_metrics_ends_in_one_line(committed, small_disk):
    workdir = small_disk / "run"
    shutil.copytree(committed[0], workdir)
    fill(small_disk, leave_bytes=0)
    result = run(workdir, *RESUME)
    assert last_line(result) == (
        f"error: writing to {workdir} failed (No space left on device); committed checkpoints "
        "are kept: free space and run again to resume"
    )
    assert committed_steps(workdir / "checkpoints") == ["2", "4"]


@pytest.mark.parametrize(
    "logger, path, message, error, dropped",
    [
        ("asyncio", __file__, "Future exception was never retrieved", NO_SPACE, True),
        ("asyncio", __file__, "Future exception was never retrieved", TENSORSTORE_FULL, True),
        ("asyncio", __file__, "Future exception was never retrieved", NO_ACCESS, False),
        ("asyncio", __file__, "Future exception was never retrieved", RuntimeError("bug"), False),
        ("absl", ORBAX_FILE, "Failed to save: [os_error_code='28']", None, True),
        ("absl", ORBAX_FILE, "Save failed", NO_SPACE, True),
        ("absl", ORBAX_FILE, "Checkpoint directory is corrupt", None, False),
        ("absl", ORBAX_FILE, "Save failed", NO_ACCESS, False),
        ("absl", __file__, "No space left on device, says someone else", None, False),
    ],
)
def test_the_logs_of_failed_writes_are_dropped_and_other_errors_kept(
    logger, path, message, error, dropped
):
    """What orbax and the background-save race log, whichever way the write failed; real orbax
    errors and other loggers' records stay."""
    exc_info = (type(error), error, None) if error else None
    record = logging.getLogger(logger).makeRecord(
        logger, logging.ERROR, path, 1, message, (), exc_info
    )
    assert bool(checkpointing._DropFailedSaveNoise().filter(record)) is not dropped
