"""The whole accelerator check in one command, prepared for one short GPU run:

    python benchmarks/accelerator.py --out=DIR [--tiny] [--data=data]

Writes DIR/results.jsonl (one JSON row per result, appended as soon as it exists) and
DIR/log.txt (every sub-command and its output). In order:

1. `env`: device kind and count, versions (jax, jaxlib, flax, optax, orbax, torch, timm), XLA flags.
2. `pytest`: the test files that need no TensorFlow (model, step, mixing, erasing, locality,
   analysis pass, random streams, on-device input and augmentation, a Modern on-device run with
   checkpoint, kill and resume): passed / failed / skipped counts.
3. `train_step` rows: ours (`train_step.py`, mode "jit") in float32 and bfloat16, batch 128, 512
   and 2048, at 32 px (CIFAR) and 64 px (Tiny-ImageNet); timm's twin (`timm_step.py`) eager at
   the same sizes and `torch.compile`d at batch 512, 32 px only (the 8-minute budget keeps one
   compiled size). img/s is the median of 5 timed windows after warm-up; MFU against
   `shared.PEAK_TFLOPS` (bf16 dense peak; float32 matmuls run as TF32 on NVIDIA GPUs, whose
   peak is half of it).
4. `end_to_end`: `configs/fashion_mnist_baseline.py` with `data.on_device=True` on the full
   Fashion-MNIST in DATA/fashion-mnist, its img/s against the step alone (`input_bound`).
5. `locality_pass`: img/s of the jitted analysis at 32 and 64 px (`analysis.py`).

Every train-step row carries name, framework (jax | torch), mode (jit | eager | compile), dtype,
batch_size, image_size, img_per_s, mfu and device_kind. This process never imports JAX (each
measurement runs in its own process, which owns the accelerator while it runs). `--tiny` runs
the same code paths at tiny sizes on a CPU in about a minute (tests/test_accelerator.py).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

BENCHMARKS = pathlib.Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
# The repository on the import path of this process and of every sub-command (`python
# benchmarks/X.py` puts only benchmarks/ there), where the package is not pip-installed.
sys.path.insert(0, str(REPO))
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
}
from vit_locality.workdir import RunDir  # noqa: E402

NO_TENSORFLOW_TESTS = (
    "tests/test_model.py",
    "tests/test_step.py",
    "tests/test_mixing.py",
    "tests/test_erasing.py",
    "tests/test_locality.py",
    "tests/test_analysis_pass.py",
    "tests/test_rng.py",
    "tests/test_device_input.py",
    "tests/test_device_augment.py",
    "tests/test_device_modern.py",
)
VERSIONS = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "torch", "timm")


class Report:
    """DIR/results.jsonl and DIR/log.txt, appended as the check goes."""

    def __init__(self, out: pathlib.Path):
        out.mkdir(parents=True, exist_ok=True)
        self.results, self.log = out / "results.jsonl", out / "log.txt"

    def row(self, row: dict) -> None:
        with self.results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    def run(self, command: list[str], timeout: int, env: dict | None = None) -> str:
        """Runs `command` from the repository root; logs it; returns its stdout ('' on a
        timeout or failure, which the log records)."""
        began = time.monotonic()
        try:
            done = subprocess.run(
                command, cwd=REPO, env=env or ENV, capture_output=True, text=True, timeout=timeout
            )
            status, stdout, stderr = f"exit {done.returncode}", done.stdout, done.stderr
        except subprocess.TimeoutExpired as e:
            status, stdout, stderr = f"timeout after {timeout} s", "", str(e.stderr or "")
        with self.log.open("a") as f:
            f.write(f"$ {' '.join(command)}\n[{status}, {time.monotonic() - began:.1f} s]\n")
            f.write(stdout[-20000:] + stderr[-20000:] + "\n")
        return stdout if status == "exit 0" else ""


def json_rows(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(report: Report) -> str:
    probe = "import jax; d = jax.devices(); print(d[0].device_kind, len(d), sep='|')"
    kind, count = (report.run([sys.executable, "-c", probe], 120).strip() or "?|0").split("|")
    report.row(
        {
            "name": "env",
            "device_kind": kind,
            "device_count": int(count),
            "versions": {package: version(package) for package in VERSIONS},
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "python": sys.version.split()[0],
        }
    )
    return kind


def tests(report: Report, files: tuple[str, ...]) -> None:
    stdout = report.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files], 300
    )
    summary = stdout.strip().splitlines()[-1] if stdout.strip() else "did not finish"
    counts = {k: 0 for k in ("passed", "failed", "skipped", "errors")}
    for part in summary.replace(" in ", ", ").split(", "):
        number, _, word = part.strip().partition(" ")
        key = {"error": "errors"}.get(word, word)
        if number.isdigit() and key in counts:
            counts[key] = int(number)
    report.row({"name": "pytest", **counts, "summary": summary, "files": list(files)})


def train_steps(report: Report, sizes: dict) -> None:
    ours = [sys.executable, str(BENCHMARKS / "train_step.py"), f"--steps={sizes['steps']}"]
    ours.append(f"--windows={sizes['windows']}")
    twin = [sys.executable, str(BENCHMARKS / "timm_step.py"), f"--steps={sizes['steps']}"]
    twin.append(f"--windows={sizes['windows']}")
    for model in sizes["models"]:
        for batch in sizes["batches"]:
            size = [f"--models={model}", f"--batch_size={batch}", f"--dtypes={sizes['dtypes']}"]
            for row in json_rows(report.run([*ours, *size], 600)):
                report.row({**row, "name": "train_step", "framework": "jax", "mode": "jit"})
            modes = [("eager", [])]
            if (model, batch) == sizes["compiled"]:
                modes.append(("compile", ["--compile"]))
            for mode, flag in modes:
                for row in json_rows(report.run([*twin, *size, *flag], 600)):
                    report.row({**row, "name": "train_step", "framework": "torch", "mode": mode})


def end_to_end(report: Report, data: pathlib.Path, sizes: dict, workdir: pathlib.Path) -> None:
    """Real training steps with the input on the device against the step alone."""
    steps, batch = sizes["e2e_steps"], sizes["e2e_batch"]
    main = [sys.executable, "-m", "vit_locality.main", "--config=configs/fashion_mnist_baseline.py"]
    main += [f"--workdir={workdir}", "--config.data.source=files", "--config.data.on_device=True"]
    main += [f"--config.data.dir={data / 'fashion-mnist'}", f"--config.batch_size={batch}"]
    main += [f"--config.total_steps={steps}", "--config.warmup_epochs=0"]
    main += [f"--config.log_every_steps={max(1, steps // 4)}", "--config.evals=locality"]
    main += ["--config.analysis.num_images=16"]  # the run is for its training speed
    main += [f"--config.ckpt_every_steps={steps}", f"--config.eval_every_steps={steps}"]
    report.run(main, 600)
    rows = RunDir(workdir).read_metrics()
    speeds = [r["train/img_per_s"] for r in rows if "train/img_per_s" in r][1:]  # after compile
    alone = json_rows(
        report.run(
            [sys.executable, str(BENCHMARKS / "train_step.py"), "--models=fashion_mnist"]
            + [f"--batch_size={batch}", "--dtypes=float32", f"--steps={sizes['steps']}"],
            600,
        )
    )
    e2e = sorted(speeds)[len(speeds) // 2] if speeds else None
    step = alone[0]["img_per_s"] if alone else None
    report.row(
        {
            "name": "end_to_end",
            "config": "fashion_mnist_baseline, data.on_device=True",
            "img_per_s": e2e,
            "step_alone_img_per_s": step,
            "input_bound": None if not (e2e and step) else e2e < 0.9 * step,
            "batch_size": batch,
            "steps": steps,
        }
    )


def locality(report: Report, sizes: dict) -> None:
    command = [sys.executable, str(BENCHMARKS / "analysis.py"), f"--cases={sizes['cases']}"]
    command += [f"--batch_size={sizes['analysis_batch']}", "--batches=3"]
    for row in json_rows(report.run(command, 600)):
        report.row({**row, "name": "locality_pass", "framework": "jax"})


FULL = {
    "models": ("cifar", "tiny_imagenet"),
    "batches": (128, 512, 2048),
    "dtypes": "float32,bfloat16",
    "steps": 10,
    "windows": 5,
    "compiled": ("cifar", 512),
    "e2e_steps": 200,
    "e2e_batch": 512,
    "cases": "32px_patch4,64px_patch4",
    "analysis_batch": 256,
}
TINY = {
    "models": ("cifar",),
    "batches": (8,),
    "dtypes": "float32",
    "steps": 1,
    "windows": 2,
    "compiled": (None, None),
    "e2e_steps": 4,
    "e2e_batch": 16,
    "cases": "32px_patch4",
    "analysis_batch": 8,
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/accelerator.py")
    parser.add_argument("--out", required=True, help="results.jsonl and log.txt go here")
    parser.add_argument("--data", default="data", help="holds fashion-mnist/")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a CPU check in a minute")
    args = parser.parse_args(argv)
    out, sizes = pathlib.Path(args.out), TINY if args.tiny else FULL
    report = Report(out)
    began = time.monotonic()
    environment(report)
    tests(report, ("tests/test_rng.py",) if args.tiny else NO_TENSORFLOW_TESTS)
    train_steps(report, sizes)
    e2e_workdir = REPO / "runs" / "accelerator_end_to_end"  # outside DIR: DIR stays 2 files
    shutil.rmtree(e2e_workdir, ignore_errors=True)
    end_to_end(report, pathlib.Path(args.data), sizes, e2e_workdir)
    locality(report, sizes)
    report.row({"name": "done", "wall_s": round(time.monotonic() - began, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
