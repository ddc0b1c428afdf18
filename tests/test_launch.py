"""`./launch.sh tpu`: the gcloud commands it runs, checked with --dry-run (no gcloud on PATH) and
with a fake gcloud that records its calls."""

import os
import pathlib
import shlex
import shutil
import subprocess
import tarfile

import pytest

from .conftest import REPO_ROOT

BASH = shutil.which("bash")
TPU = ["tpu", "--name=vit", "--zone=us-central2-b"]


def _bin_dir(tmp_path: pathlib.Path, *tools: str) -> pathlib.Path:
    """A PATH directory holding only `tools` (links to the real ones): no gcloud."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return bin_dir


def _launch(bin_dir: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BASH, "launch.sh", *args],
        cwd=REPO_ROOT,
        env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/tmp")},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _gcloud_calls(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    assert lines and all(line.startswith("+ gcloud compute tpus tpu-vm ") for line in lines)
    return [shlex.split(line[2:]) for line in lines]


def _remote(call: list[str]) -> list[str]:
    """The words of the remote shell command of an ssh call."""
    (command,) = [arg.removeprefix("--command=") for arg in call if arg.startswith("--command=")]
    return shlex.split(command)


def _contains(words: list[str], part: list[str]) -> bool:
    return any(words[i : i + len(part)] == part for i in range(len(words)))


def test_dry_run_prints_every_gcloud_command(tmp_path):
    result = _launch(
        _bin_dir(tmp_path, "dirname"),
        *TPU,
        "--config=configs/cifar100_modern.py:smoke",
        "--dry-run",
        "--",
        "--config.batch_size=256",
        "--config.data.dir=/data/my 'images'",
    )
    assert result.returncode == 0, result.stderr
    describe, create, copy, install, run, back = _gcloud_calls(result.stdout)
    assert describe[4:] == ["describe", "vit", "--zone=us-central2-b"]
    assert create[4:] == [
        "create",
        "vit",
        "--zone=us-central2-b",
        "--accelerator-type=v4-8",
        "--version=tpu-ubuntu2204-base",
    ]
    assert copy[4] == "scp" and copy[6] == "vit:vit-locality.tar.gz" and "--worker=all" in copy

    assert install[4:6] == ["ssh", "vit"] and "--worker=all" in install
    assert _contains(_remote(install), ["tar", "-xzf", "vit-locality.tar.gz"])
    assert _contains(_remote(install), ["pip", "install", "--quiet", "-e", ".", "jax[tpu]"])

    assert run[4:6] == ["ssh", "vit"] and "--worker=all" in run
    workdir = "runs/cifar100_modern_smoke"
    assert _contains(
        _remote(run),
        [
            "python3",
            "-m",
            "vit_locality.main",
            "--multihost",
            "--config=configs/cifar100_modern.py:smoke",
            f"--workdir={workdir}",
            "--config.batch_size=256",
            "--config.data.dir=/data/my 'images'",
            "2>&1",
            "|",
            "tee",
            "-a",
            f"{workdir}/launch.log",
        ],
    )
    assert back[4:] == [
        "scp",
        "--recurse",
        f"vit:vit-locality/{workdir}",
        "runs",
        "--zone=us-central2-b",
        "--worker=0",
    ]


def test_dry_run_of_a_sweep_with_options(tmp_path):
    result = _launch(
        _bin_dir(tmp_path, "dirname"),
        *TPU,
        "--sweep=configs/sweeps/paper.py",
        "--workdir=runs/paper_v4",
        "--version=tpu-ubuntu2204-base",
        "--dry-run",
        "--",
        "--variant=smoke",
    )
    assert result.returncode == 0, result.stderr
    _, create, _, _, run, back = _gcloud_calls(result.stdout)
    assert "--accelerator-type=v4-8" in create and "--worker=all" in run
    sweep = ["python3", "-m", "vit_locality.sweep", "configs/sweeps/paper.py"]
    assert _contains(
        _remote(run), [*sweep, "--root=runs/paper_v4", "--multihost", "--variant=smoke"]
    )
    assert back[5:8] == ["--recurse", "vit:vit-locality/runs/paper_v4", "runs"]


def test_dry_run_of_a_multi_worker_slice_on_a_gcs_workdir(tmp_path):
    """v4-32 has 4 workers: every one runs the same command on the shared gs:// workdir, the
    log stays on each worker, and nothing is copied back."""
    result = _launch(
        _bin_dir(tmp_path, "dirname"),
        *TPU,
        "--config=configs/cifar100_modern.py",
        "--workdir=gs://my-bucket/cifar100_modern",
        "--accelerator=v4-32",
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    calls = _gcloud_calls(result.stdout)
    assert [call[4] for call in calls] == ["describe", "create", "scp", "ssh", "ssh"]
    run = calls[-1]
    assert "--accelerator-type=v4-32" in calls[1] and "--worker=all" in run
    words = _remote(run)
    assert _contains(
        words,
        [
            "python3",
            "-m",
            "vit_locality.main",
            "--multihost",
            "--config=configs/cifar100_modern.py",
            "--workdir=gs://my-bucket/cifar100_modern",
            "2>&1",
            "|",
            "tee",
            "-a",
            "launch.log",
        ],
    )
    assert "mkdir" not in words


@pytest.mark.parametrize(
    "args,message",
    [
        (["tpu", "--zone=z", "--config=c.py"], "needs --name=NAME; e.g."),
        (["tpu", "--name=n"], "needs --zone=ZONE, --config=CONFIG or --sweep=SWEEP_FILE; e.g."),
        ([*TPU, "--config=c.py", "--sweep=s.py"], "takes --config or --sweep, not both"),
        ([*TPU, "--config=c.py", "--config.lr=1"], "unknown argument '--config.lr=1'"),
        (
            [*TPU, "--config=c.py", "--accelerator=v4-16"],
            "--accelerator=v4-16 has several workers, which must share the workdir: use "
            "--workdir=gs://BUCKET/PATH",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, message):
    result = _launch(_bin_dir(tmp_path, "dirname"), *args, "--dry-run")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ./launch.sh tpu") and message in result.stderr
    assert result.stderr.count("\n") == 1


FAKE_GCLOUD = """#!{bash}
printf '%s\\n' "$*" >> "{log}"
case "$4" in
  scp) [[ $5 == --recurse ]] || cp "$5" "{copy}" ;;
  ssh) [[ $* != *vit_locality.main* ]] || exit 3 ;;
esac
"""


def test_runs_gcloud_ships_the_tracked_files_and_passes_the_exit_status(tmp_path):
    """With a fake gcloud (the TPU VM exists; training fails with status 3): no create, the
    tarball holds the repository without .venv, the workdir is still copied back."""
    bin_dir = _bin_dir(tmp_path, "dirname", "git", "tar", "gzip", "mktemp", "rm", "mkdir", "cp")
    log, copy = tmp_path / "gcloud.log", tmp_path / "shipped.tar.gz"
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD.format(bash=BASH, log=log, copy=copy))
    (bin_dir / "gcloud").chmod(0o755)
    # --workdir=w: its local parent is ".", so the run creates nothing in the repository.
    result = _launch(bin_dir, *TPU, "--config=configs/cifar10_baseline.py", "--workdir=w")
    assert result.returncode == 3, result.stderr
    verbs = [line.split()[3] for line in log.read_text().splitlines()]
    assert verbs == ["describe", "scp", "ssh", "ssh", "scp"]
    with tarfile.open(copy) as tar:
        names = set(tar.getnames())
    assert {"launch.sh", "pyproject.toml", "vit_locality/main.py"} <= names
    assert not any(name.startswith((".venv/", "runs/", ".git/")) for name in names)


def _preload_tcmalloc(ld_preload: str | None) -> str:
    """LD_PRELOAD after launch.sh's preload_tcmalloc, run alone with `ld_preload` set before."""
    function = (REPO_ROOT / "launch.sh").read_text().split("\npreload_tcmalloc() {", 1)[1]
    function = "preload_tcmalloc() {" + function.split("\n}\n", 1)[0] + "\n}\n"
    env = {"PATH": os.environ["PATH"]}
    if ld_preload is not None:
        env["LD_PRELOAD"] = ld_preload
    script = function + 'preload_tcmalloc; echo "${LD_PRELOAD:-}"'
    return subprocess.run(
        [BASH, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_test_and_train_preload_tcmalloc_when_installed():
    installed = [  # in launch.sh's order of preference
        str(p)
        for name in ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
        for p in sorted(pathlib.Path("/usr/lib").glob(f"*/{name}"))
    ]
    assert _preload_tcmalloc(None) == (installed[0] if installed else "")
    assert _preload_tcmalloc("/opt/my_malloc.so") == "/opt/my_malloc.so"  # the user's choice
    launcher = (REPO_ROOT / "launch.sh").read_text()
    for mode in ("test", "train"):
        block = launcher.split(f"\n  {mode})\n", 1)[1].split(";;", 1)[0]
        assert "preload_tcmalloc" in block.split("exec", 1)[0], mode
