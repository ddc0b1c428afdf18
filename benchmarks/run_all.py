"""Runs every benchmark in this folder, one after another, and prints all their JSON lines.

    python benchmarks/run_all.py [--batch_size=N] [--quick] [--timm_python=PYTHON]

`--quick` runs the float32 CIFAR-size rows only (minutes on a laptop CPU). Each benchmark runs in
its own process, so one that fails is reported and the others still run. `timm_step.py` (the
PyTorch + timm twin of `train_step.py`) runs with `--timm_python` (default: this Python) and is
skipped, with a line saying so, where that Python has no PyTorch or timm.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--timm_python", default=sys.executable, help="a Python with torch+timm")
    args = parser.parse_args()
    batch = [f"--batch_size={args.batch_size}"] if args.batch_size else []
    quick_train = ["--models=cifar", "--dtypes=float32", "--steps=5"] if args.quick else []
    commands = [
        ["train_step.py", *quick_train],
        ["timm_step.py", *quick_train],
        ["end_to_end.py", *(["--steps=5"] if args.quick else [])],
        ["input_pipeline.py", *(["--batches=50"] if args.quick else [])],
        ["analysis.py", *(["--cases=32px_patch4", "--batches=2"] if args.quick else [])],
    ]
    failed = []
    for script, *extra in commands:
        python = args.timm_python if script == "timm_step.py" else sys.executable
        result = subprocess.run(
            [python, str(HERE / script), *extra, *batch], capture_output=True, text=True
        )
        for line in result.stdout.splitlines():
            if line.startswith("{"):
                print(line, flush=True)
        if script == "timm_step.py" and result.returncode == 2:  # no torch or timm there
            print(f"{script} skipped: {result.stderr.strip()}", file=sys.stderr)
        elif result.returncode:
            failed.append(script)
            print(f"{script} failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
