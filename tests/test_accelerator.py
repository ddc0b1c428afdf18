"""`benchmarks/accelerator.py`, tried as the lent GPU machine runs it: from a plain copy of the
repository, in a Python where the project is not installed, TensorFlow and tfds cannot be imported
and ml-collections comes only from a `--target` folder on PYTHONPATH, with the data in `data/`.
Also: its children stop whole at a limit, and the visit ends by its deadline."""

import importlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time

import pytest

from vit_locality import process_group

from .conftest import CIFAR10_SAMPLE, FASHION_MNIST, REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import reproduce  # noqa: E402

needs_data = pytest.mark.skipif(
    not (CIFAR10_SAMPLE / "test_batch.bin").exists() or not FASHION_MNIST.is_dir(),
    reason="real data absent",
)
# What the visit's machine lacks: left out of the bare Python's site-packages.
ABSENT = ("tensorflow", "tensorflow_datasets", "ml_collections", "vit_locality", "__editable__")


@pytest.fixture(scope="module")
def as_there(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path, dict[str, str]]:
    """(a plain copy of the repository with its data in data/, a bare Python, its environment).

    The bare Python is a venv whose site-packages links every package of this one but those in
    ABSENT (and no .pth file, so no editable install); ml_collections is copied into a target
    folder on PYTHONPATH, as `pip install --target` of its wheel leaves it."""
    root = tmp_path_factory.mktemp("as_there")
    repo = root / "repo"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_bytes(source.read_bytes())
    (repo / "data").mkdir()
    for real in (CIFAR10_SAMPLE, FASHION_MNIST):
        (repo / "data" / real.name).symlink_to(real)

    bare = root / "python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", bare], check=True)
    ours = pathlib.Path(sysconfig.get_paths()["purelib"])
    theirs = next((bare / "lib").glob("python3*/site-packages"))
    target = root / "target"
    target.mkdir()
    for entry in ours.iterdir():
        if entry.name.startswith("ml_collections"):  # the package and its dist-info
            shutil.copytree(entry, target / entry.name)
        if entry.suffix == ".pth" or entry.name.startswith(ABSENT):
            continue
        (theirs / entry.name).symlink_to(entry)
    env = {**os.environ, "PYTHONPATH": str(target)}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"  # one device, as one GPU
    return repo, bare / "bin" / "python", env


FIND = "import importlib.util, json, sys; print(json.dumps([getattr(importlib.util.find_spec(m), \
'origin', None) for m in sys.argv[1:]]))"


@needs_data
def test_the_bare_python_is_the_machine_s(as_there):
    repo, python, env = as_there
    modules = ["vit_locality", "tensorflow", "tensorflow_datasets", "ml_collections", "jax"]
    out = subprocess.run(
        [python, "-c", FIND, *modules], cwd="/", env=env, capture_output=True, text=True
    )
    origins = dict(zip(modules, json.loads(out.stdout), strict=True))
    assert origins["vit_locality"] is origins["tensorflow"] is origins["tensorflow_datasets"]
    assert origins["vit_locality"] is None
    assert origins["ml_collections"].startswith(env["PYTHONPATH"]) and origins["jax"]


def visit(
    as_there, out: pathlib.Path, budget_s: float
) -> tuple[subprocess.CompletedProcess, float]:
    repo, python, env = as_there
    command = [
        python,
        "benchmarks/accelerator.py",
        "--tiny",
        f"--out={out}",
        f"--budget_s={budget_s}",
    ]
    began = time.monotonic()
    result = subprocess.run(
        command, cwd=repo, env=env, capture_output=True, text=True, timeout=budget_s + 60
    )
    return result, time.monotonic() - began


@needs_data
def test_the_visit_packs_every_stage_from_a_plain_copy(as_there, tmp_path):
    result, _ = visit(as_there, tmp_path, budget_s=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    files = ["log.txt", "reproduction.tar.gz", "results.jsonl", "summary.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    stages = [(r["stage"], r["status"]) for r in rows if r["name"] == "stage"]
    assert stages == [
        (name, "done") for name in ("env", "sizing", "reproduction", "speed", "more_speed")
    ]
    named = {}
    for row in rows:
        named.setdefault(row["name"], []).append(row)
    env = named["env"][0]
    assert (env["device_kind"], env["device_count"], env["platform"]) == ("cpu", 1, "cpu")
    assert env["torch_cuda"] is None  # no torch in this Python
    sizing, ours = named["train_step"][:2]
    assert (sizing["model"], sizing["framework"], sizing["dtype"]) == (
        "fashion_mnist", "jax", "bfloat16",
    )  # fmt: skip
    assert sizing["batch_size"] == 8 and sizing["windows"] == 2 and sizing["img_per_s"] > 0
    assert sizing["flops_per_step"] == 108_674_187_264 // 16  # the formula, batch 8 of 128
    speed = named["speed"][0]  # no torch in this Python: timm's row is missing, no ratio
    assert (ours["model"], ours["batch_size"]) == ("cifar", 8)
    assert speed["ours_img_per_s"] == ours["img_per_s"] and speed["ratio"] is None
    assert "pip install torch timm" in (tmp_path / "log.txt").read_text()
    assert [r["dtype"] for r in named["train_step"][2:]] == ["float32"]  # stage 5
    assert named["locality_pass"][0]["img_per_s"] > 0

    reproduction = named["reproduction"][0]
    assert reproduction["img_per_s"] == round(sizing["img_per_s"], 1)
    assert [(r["name"], r["status"]) for r in reproduction["runs"]] == [
        ("fmnist_baseline_seed0", "finished"),
        ("fmnist_cm_seed0", "finished"),
    ]
    with tarfile.open(tmp_path / "reproduction.tar.gz") as archive:
        names = archive.getnames()
        config = json.load(archive.extractfile("reproduction/runs/fmnist_cm_seed0/config.json"))
        record = json.load(archive.extractfile("reproduction/reproduce.json"))
        run_summary = archive.extractfile("reproduction/summary.md").read().decode()
    assert "reproduction/runs/fmnist_baseline_seed0/locality.json" in names
    assert not any("checkpoints" in name for name in names)
    assert record["device_kind"] == "cpu"  # passed in from the env stage
    # Sized from the step's throughput: a CPU's fits fewer than the tiny cap of 40 steps, or
    # the cap; the cosine runs over exactly that length.
    assert 4 <= config["total_steps"] <= 40 and config["schedule"] == "cosine"
    assert f"| fmnist_cm_seed0 | {config['total_steps']} | {config['total_steps']} |" in (
        run_summary
    )

    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("# GPU visit: cpu x 1")
    assert "no ratio (a row is missing: see log.txt)" in summary
    assert run_summary.strip() in summary and "## Stages" in summary
    assert summary.index("## Reproduction") < summary.index("## Speed")


@needs_data
def test_the_visit_ends_by_its_deadline_with_what_it_finished(as_there, tmp_path):
    result, _ = visit(as_there, tmp_path, budget_s=20)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert rows[0]["name"] == "env" and rows[-1]["name"] == "done"
    # The visit's own clock (the test's would add the interpreter's start, however slow): each
    # child's limit ends 2 s before the deadline, its grace included.
    assert rows[-1]["wall_s"] <= 20
    statuses = {r["stage"]: r["status"] for r in rows if r["name"] == "stage"}
    assert list(statuses) == ["env", "sizing", "reproduction", "speed", "more_speed"]
    assert set(statuses.values()) <= {"done", "no time left"}
    assert statuses["reproduction"] == "no time left"  # it needs PAIR_SHARE and PACK_S
    assert (tmp_path / "summary.md").read_text().startswith("# GPU visit: cpu x 1")


@needs_data
def test_without_a_gpu_the_full_visit_stops_after_env_in_one_line(as_there, tmp_path):
    repo, python, env = as_there
    command = [python, "benchmarks/accelerator.py", f"--out={tmp_path}", "--data=data"]
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: JAX sees no GPU (cpu x 1); torch sees no GPU (not installed): stopping the "
        "visit (OUT/results.jsonl has the env row)"
    ]
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["name"] for r in rows] == ["env", "stage", "done"]
    assert rows[1]["status"].startswith("failed: JAX sees no GPU")


def test_at_60000_img_per_s_each_run_of_the_pair_gets_30000_steps_whatever_came_before():
    """The plan's arithmetic on the H200's expected numbers: the bare bf16 step at 60,000 img/s
    (batch 128, one process). The stages before the pair end by the pre-pair deadline however
    slow they are, so the pair's budget is at least 60% of the 540 s, the pair fits 30,000
    steps per run or more, and it ends, packed, inside the visit."""
    budget = 540.0
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        accelerator = importlib.import_module("accelerator")
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))
    reserve = accelerator.FULL["speed_reserve_s"]
    (run, _), *_ = reproduce.plan_pairs("data", tiny=False)
    per_step = reproduce.first_seconds_per_flop(60_000, run) * reproduce.step_flops(run)
    slowest_start = accelerator.pre_pair_deadline_s(budget)
    for started_at in (10.0, 45.0, slowest_start):  # the env and sizing stages' wall time
        left = budget - started_at
        pair_s = accelerator.pair_budget_s(budget, left, reserve)
        assert pair_s >= accelerator.PAIR_SHARE * budget
        assert started_at + pair_s + accelerator.PACK_S <= budget
        assert reproduce.pair_steps(pair_s, per_step, reproduce.PAPER_STEPS) >= 30_000
    fast = accelerator.pair_budget_s(budget, budget - 10.0, reserve)
    assert fast == budget - 10.0 - reserve - accelerator.PACK_S  # the speed stage keeps its time


GRANDCHILD = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(grandchild.pid, flush=True)
time.sleep(float(sys.argv[1]))
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = pathlib.Path(f"/proc/{pid}/stat")
    return not (state.exists() and state.read_text().split(") ")[1].startswith("Z"))


@pytest.mark.parametrize("child_sleeps, expected", [(60, None), (0, 0)])
def test_a_child_stops_whole_at_its_limit_or_exit(tmp_path, child_sleeps, expected):
    """At the limit, or when the child exits first, nothing it started is left running."""
    with (tmp_path / "output").open("w+") as output:
        code = process_group.run(
            [sys.executable, "-c", GRANDCHILD, str(child_sleeps)],
            timeout_s=5, output=output, grace_s=1,
        )  # fmt: skip
        output.seek(0)
        grandchild = int(output.read().split()[0])
    assert code == expected  # None: stopped at the limit (a child that ran on would exit 0)
    deadline = time.monotonic() + 120  # only against waiting for ever: init reaps the orphan
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)
