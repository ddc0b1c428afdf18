"""Reproduce the CutMix split on real images within a time budget, and pack the results.

    python scripts/reproduce.py --out=results/DATE-DEVICE-cutmix [--budget_s=420] [--data=data]
        [--root=runs/reproduce] [--tiny] [--max_runs=N] [--archive]

1. Trains the runs of `configs/sweeps/reproduce.py` in the order the finding needs them
   (`priority`: CIFAR-10 Baseline and +CutMix, then +LS and +CutMix+LS, then seed 1, then
   Fashion-MNIST), each as `python -m vit_locality.main` in ROOT/NAME with JAX's persistent
   compilation cache in ROOT/jax_cache (runs of one shape compile once). A run starts only when
   its expected time (the last run of its dataset, or CIFAR-10's time per image scaled to the
   dataset) fits what is left of `--budget_s`. Finished runs are skipped (resume is automatic).
2. Writes the report of the finished runs (`vit_locality.report`) into OUT/report.
3. Copies each run's config.json, plan.json, metrics.jsonl, locality.json and plots/ (not its
   checkpoints) into OUT/runs/NAME; writes OUT/summary.md (per dataset and condition: top-1,
   first-layer and early min MAD, first-layer min entropy, mean ± std over seeds, and whether
   every CutMix run is below every run without it) and OUT/reproduce.json (device, versions,
   wall times, runs skipped); with `--archive`, OUT.tar.gz in place of the folder (one file to
   bring back from a machine that returns few files).

DATA holds `cifar10-sample/` and `fashion-mnist/` (copy them from ../shared/data; `data/` is
ignored by git). No TensorFlow is needed. `--tiny` runs the same code paths with a tiny ViT and
a few steps (about a minute on a CPU; tests/test_reproduce.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

from vit_locality import sweep
from vit_locality.report import write_report
from vit_locality.report.conditions import DATASET_NAMES, group_runs, load_runs
from vit_locality.report.tables import mean_std, table
from vit_locality.workdir import RunDir

SWEEP = pathlib.Path(__file__).resolve().parents[1] / "configs" / "sweeps" / "reproduce.py"
DATASET_ORDER = ("c10", "fmnist")
CONDITION_ORDER = ("baseline", "cm", "ls", "cm+ls")
TRAIN_SIZES = {"c10": 5085, "fmnist": 60000}
TINY = {
    "model.width": "32",
    "model.depth": "2",
    "model.num_heads": "2",
    "model.mlp_dim": "64",
    "model.dtype": "float32",
    "batch_size": "64",
    "total_steps": "40",
    "warmup_epochs": "0.1",
    "eval_every_steps": "1000",
    "analysis.num_images": "64",
    "analysis.every_epochs": "100",
}
KEPT = ("config.json", "plan.json", "metrics.jsonl", "locality.json")


def priority(run: sweep.Run) -> tuple[int, int, int]:
    """CIFAR-10 before Fashion-MNIST; within one, seed 0 before seed 1; then the conditions in
    CONDITION_ORDER (Baseline and +CutMix first)."""
    dataset, condition = run.name.split("_seed")[0].split("_", 1)
    seed = int(run.name.rsplit("_seed", 1)[1])
    return DATASET_ORDER.index(dataset), seed, CONDITION_ORDER.index(condition)


def plan_runs(data: str, tiny: bool) -> list[sweep.Run]:
    entries, seeds = sweep.load_sweep(SWEEP)
    runs = sweep.expand(entries, seeds, global_overrides=TINY if tiny else None)
    runs = [
        dataclasses.replace(
            run,
            overrides={
                **run.overrides,
                "data.dir": str(pathlib.Path(data) / pathlib.Path(run.overrides["data.dir"]).name),
            },
        )
        for run in runs
    ]
    return sorted(runs, key=priority)


def image_epochs(run: sweep.Run) -> float:
    """Training images the run goes through: train set size x epochs."""
    return TRAIN_SIZES[run.name.split("_", 1)[0]] * float(run.overrides["total_epochs"])


def expected_seconds(run: sweep.Run, rates: dict[str, float]) -> float | None:
    """`rates`: seconds per training image of the runs so far, by name. The run's expected wall
    time at the last rate of its dataset, else at the last rate of any; None before any run."""
    dataset = run.name.split("_", 1)[0]
    same = [rate for name, rate in rates.items() if name.startswith(f"{dataset}_")]
    rate = same[-1] if same else (list(rates.values())[-1] if rates else None)
    return None if rate is None else rate * image_epochs(run)


def device_kind() -> str:
    """JAX's first device, asked in a child process (this one must not hold the accelerator)."""
    code = "import jax; print(jax.devices()[0].device_kind, jax.__version__, sep='|')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def train(runs: list[sweep.Run], root: pathlib.Path, budget_s: float) -> list[dict]:
    """Trains `runs` in order within `budget_s`; returns one record per run."""
    env = {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    start, rates, records = time.monotonic(), {}, []
    for i, run in enumerate(runs, start=1):
        run_dir = RunDir(root / run.name)
        left = budget_s - (time.monotonic() - start)
        expected = expected_seconds(run, rates)
        if run_dir.is_finished():
            status, seconds = "finished before", 0.0
        elif left <= 0 or (expected is not None and expected > left):
            status, seconds = f"skipped (expected {expected or 0:.0f} s, {left:.0f} s left)", 0.0
        else:
            command = [sys.executable, "-m", "vit_locality.main", *run.args(root)]
            print(f"[{i}/{len(runs)}] {run.name}: training", flush=True)
            began = time.monotonic()
            code = subprocess.run(command, env=env).returncode
            seconds = time.monotonic() - began
            rates[run.name] = seconds / image_epochs(run)
            status = "finished" if code == 0 and run_dir.is_finished() else f"failed (exit {code})"
        print(f"[{i}/{len(runs)}] {run.name}: {status}", flush=True)
        records.append({"name": run.name, "status": status, "seconds": round(seconds, 1)})
    return records


def pack(names: list[str], root: pathlib.Path, out: pathlib.Path) -> None:
    """Each run's small files and plots (no checkpoints) into OUT/runs/NAME."""
    for name in names:
        source, target = root / name, out / "runs" / name
        target.mkdir(parents=True, exist_ok=True)
        for file in KEPT:
            if (source / file).is_file():
                shutil.copy2(source / file, target / file)
        if (source / "plots").is_dir():
            shutil.copytree(source / "plots", target / "plots", dirs_exist_ok=True)


def summary(out: pathlib.Path) -> list[str]:
    """OUT/summary.md's lines: the README's results table and whether the split holds."""
    groups = group_runs(load_runs([out / "runs"]))
    metrics = {
        "top-1 (%)": (lambda r: r.top1, 2),
        "min MAD, layer 1": (lambda r: r.summary("min_mad_first_layer"), 3),
        "min MAD, first third": (lambda r: r.summary("min_mad_early"), 3),
        "min entropy, layer 1": (lambda r: r.first_layer("entropy_min"), 3),
    }
    rows = [
        [DATASET_NAMES.get(g.dataset, g.dataset), g.label, str(len(g.runs))]
        + [mean_std(g.values(get), digits) for get, digits in metrics.values()]
        for g in groups
    ]
    lines = [*table(["dataset", "condition", "seeds", *metrics], rows), ""]
    for dataset in dict.fromkeys(g.dataset for g in groups):
        mads = {
            with_cutmix: [
                v
                for g in groups
                if g.dataset == dataset and ("cm" in g.components) == with_cutmix
                for v in g.values(lambda r: r.summary("min_mad_first_layer"))
            ]
            for with_cutmix in (True, False)
        }
        name = DATASET_NAMES.get(dataset, dataset)
        if not (mads[True] and mads[False]):
            lines.append(f"- {name}: not enough runs with and without CutMix to compare.")
            continue
        gap = min(mads[False]) - max(mads[True])
        verdict = "holds" if gap > 0 else "does not hold"
        lines.append(
            f"- {name}: the split {verdict}: the highest first-layer min MAD with CutMix is "
            f"{max(mads[True]):.3f}, the lowest without {min(mads[False]):.3f} (gap {gap:+.3f})."
        )
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/reproduce.py")
    parser.add_argument("--out", required=True, help="results folder, e.g. results/DATE-DEV-cutmix")
    parser.add_argument("--budget_s", type=float, default=420.0, help="wall seconds for training")
    parser.add_argument("--data", default="data", help="holds cifar10-sample/, fashion-mnist/")
    parser.add_argument("--root", default="runs/reproduce", help="the runs' workdirs")
    parser.add_argument("--tiny", action="store_true", help="tiny ViT, a few steps (CPU check)")
    parser.add_argument("--max_runs", type=int, default=None, help="only the first N by priority")
    parser.add_argument(
        "--archive", action="store_true", help="OUT.tar.gz in place of OUT (one file)"
    )
    args = parser.parse_args(argv)
    for folder in ("cifar10-sample", "fashion-mnist"):
        if not (pathlib.Path(args.data) / folder).is_dir():
            print(f"error: --data={args.data} has no {folder}/ (copy it from ../shared/data)",
                  file=sys.stderr)  # fmt: skip
            return 2
    began = time.monotonic()
    root, out = pathlib.Path(args.root), pathlib.Path(args.out)
    kind, jax_version = device_kind().split("|")
    runs = plan_runs(args.data, args.tiny)[: args.max_runs]
    records = train(runs, root, args.budget_s)
    trained = [r["name"] for r in records if r["status"].startswith("finished")]
    if trained:
        pack(trained, root, out)
        write_report([out / "runs"], out / "report")
        (out / "summary.md").write_text("\n".join(summary(out)) + "\n")
    record = {
        "device_kind": kind,
        "jax": jax_version,
        "command": " ".join(["python scripts/reproduce.py", *argv]),
        "budget_s": args.budget_s,
        "wall_s": round(time.monotonic() - began, 1),
        "runs": records,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "reproduce.json").write_text(json.dumps(record, indent=2) + "\n")
    if args.archive:  # OUT.tar.gz in place of OUT
        shutil.make_archive(str(out), "gztar", root_dir=out.parent, base_dir=out.name)
        shutil.rmtree(out)
    print(f"wrote {out}: {len(trained)} of {len(runs)} runs finished", flush=True)
    return 0 if trained else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
