"""Reproduce the CutMix split on real images within a time budget, and pack the results.

    python scripts/reproduce.py --out=results/DATE-DEVICE-cutmix [--budget_s=420] [--data=data]
        [--root=runs/reproduce] [--img_per_s=R] [--archive=FILE.tar.gz] [--tiny] [--max_runs=N]

Runs from a plain copy of the repository (nothing pip-installed; no TensorFlow needed).

1. Plans the runs of `configs/sweeps/reproduce.py` in the order the finding needs them
   (`priority`: Baseline and +CutMix of the first dataset, then +LS and +CutMix+LS, then seed 1,
   then the other dataset). With `--img_per_s` (the paper-size bf16 train step's throughput at
   the runs' batch size, measured on this device), `size_first_pair` gives the first dataset's
   runs as many epochs as FIRST_PAIR_SHARE of the budget allows its Baseline / +CutMix pair:
   Fashion-MNIST first when it gets at least FMNIST_MIN_EPOCHS, else the CIFAR-10 sample.
2. Trains them one after another as `python -m vit_locality.main` in ROOT/NAME, with JAX's
   persistent compilation cache in ROOT/jax_cache. A run starts only when its expected time (the
   last run of its dataset, or the last run's time per image scaled) fits what is left of
   `--budget_s`, and is sent SIGTERM (it checkpoints; a rerun resumes it) when the budget ends.
   Finished runs are skipped.
3. After every run, rewrites OUT: each finished run's config.json, plan.json, metrics.jsonl,
   locality.json and plots/ (no checkpoints) in OUT/runs/NAME, the report (OUT/report),
   OUT/summary.md (per run: steps, epochs, top-1, first-layer min MAD; per condition: mean ± std
   over seeds; whether every CutMix run is below every run without it) and OUT/reproduce.json;
   with `--archive`, the same folder as one .tar.gz, replaced atomically. A kill at any moment
   leaves the runs finished before it.

DATA holds `cifar10-sample/` and `fashion-mnist/` (copies of the real datasets). `--tiny` runs the
same code paths with a tiny ViT and a fraction of an epoch (tests/test_reproduce.py).
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
import tarfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a plain copy: `python scripts/X.py` puts only scripts/ there
from vit_locality import process_group, sweep  # noqa: E402
from vit_locality.report import write_report  # noqa: E402
from vit_locality.report.conditions import DATASET_NAMES, group_runs, load_runs  # noqa: E402
from vit_locality.report.tables import mean_std, table  # noqa: E402
from vit_locality.workdir import RunDir  # noqa: E402

SWEEP = REPO / "configs" / "sweeps" / "reproduce.py"
CONDITION_ORDER = ("baseline", "cm", "ls", "cm+ls")
TRAIN_SIZES = {"c10": 5085, "fmnist": 60000}  # training images of DATA's two datasets
BATCH_SIZE = 128  # the configs' batch (the paper's); --img_per_s is measured at this size
FIRST_PAIR_SHARE = 0.6  # of --budget_s, for the first Baseline / +CutMix pair
RUN_OVERHEAD_S = 40.0  # per run: start-up, compilation, evaluations, the final analysis
STEP_EFFICIENCY = 0.7  # training's img/s over the bare step's (input, logging, evaluations)
FMNIST_MIN_EPOCHS = 50  # Fashion-MNIST leads when its pair gets at least this many epochs
MAX_EPOCHS = {"c10": 1000.0, "fmnist": 100.0}  # about the paper's 40,000 steps at most
TINY = {
    "model.width": "32",
    "model.depth": "2",
    "model.num_heads": "2",
    "model.mlp_dim": "64",
    "model.dtype": "float32",
    "batch_size": "64",
    "total_epochs": "0.5",
    "warmup_epochs": "0.1",
    "eval_every_steps": "1000",
    "analysis.num_images": "64",
    "analysis.every_epochs": "100",
}
KEPT = ("config.json", "plan.json", "metrics.jsonl", "locality.json")


def dataset_of(run: sweep.Run) -> str:
    return run.name.split("_", 1)[0]


def priority(run: sweep.Run, first: str = "c10") -> tuple[int, int, int]:
    """`first`'s runs before the other dataset's; within one, seed 0 before seed 1; then the
    conditions in CONDITION_ORDER (Baseline and +CutMix first)."""
    dataset, condition = run.name.split("_seed")[0].split("_", 1)
    seed = int(run.name.rsplit("_seed", 1)[1])
    return int(dataset != first), seed, CONDITION_ORDER.index(condition)


def pair_epochs(dataset: str, img_per_s: float, budget_s: float) -> float:
    """Epochs of `dataset` that each run of a Baseline / +CutMix pair can train in
    FIRST_PAIR_SHARE of `budget_s` at `img_per_s` (the bare step's throughput)."""
    seconds = FIRST_PAIR_SHARE * budget_s / 2 - RUN_OVERHEAD_S
    return max(seconds, 0.0) * img_per_s * STEP_EFFICIENCY / TRAIN_SIZES[dataset]


def size_first_pair(img_per_s: float, budget_s: float) -> tuple[str, float]:
    """(the dataset that goes first, its runs' epochs): Fashion-MNIST when its pair gets
    FMNIST_MIN_EPOCHS or more, else the CIFAR-10 sample; at least 1 epoch, at most MAX_EPOCHS."""
    dataset = "fmnist" if pair_epochs("fmnist", img_per_s, budget_s) >= FMNIST_MIN_EPOCHS else "c10"
    epochs = float(int(pair_epochs(dataset, img_per_s, budget_s)))
    return dataset, min(max(epochs, 1.0), MAX_EPOCHS[dataset])


def sized(run: sweep.Run, epochs: float) -> sweep.Run:
    """`run` at `epochs`, with the schedule's other lengths scaled to it: warmup 10% of it, about
    20 evaluations and 5 locality analyses in all."""
    steps = int(epochs * TRAIN_SIZES[dataset_of(run)] // int(run.overrides["batch_size"]))
    return dataclasses.replace(
        run,
        overrides={
            **run.overrides,
            "total_epochs": f"{epochs:g}",
            "warmup_epochs": f"{epochs / 10:g}",
            "eval_every_steps": str(max(1, steps // 20)),
            "analysis.every_epochs": f"{epochs / 5:g}",
        },
    )


def plan_runs(
    data: str, tiny: bool, img_per_s: float | None = None, budget_s: float = 0.0
) -> list[sweep.Run]:
    """The sweep's runs reading DATA, in priority order; sized from `img_per_s` when given."""
    entries, seeds = sweep.load_sweep(SWEEP)
    overrides = {"batch_size": str(BATCH_SIZE), **(TINY if tiny else {})}
    runs = [
        dataclasses.replace(
            run,
            overrides={
                **run.overrides,
                "data.dir": str(pathlib.Path(data) / pathlib.Path(run.overrides["data.dir"]).name),
            },
        )
        for run in sweep.expand(entries, seeds, global_overrides=overrides)
    ]
    first = "c10"
    if img_per_s:
        first, epochs = size_first_pair(img_per_s, budget_s)
        runs = [sized(run, epochs) if dataset_of(run) == first else run for run in runs]
    return sorted(runs, key=lambda run: priority(run, first))


def image_epochs(run: sweep.Run) -> float:
    """Training images the run goes through: train set size x epochs."""
    return TRAIN_SIZES[dataset_of(run)] * float(run.overrides["total_epochs"])


def expected_seconds(run: sweep.Run, rates: dict[str, float]) -> float | None:
    """`rates`: seconds per training image of the runs so far, by name. The run's expected wall
    time at the last rate of its dataset, else at the last rate of any; None before any run."""
    same = [rate for name, rate in rates.items() if name.startswith(f"{dataset_of(run)}_")]
    rate = same[-1] if same else (list(rates.values())[-1] if rates else None)
    return None if rate is None else rate * image_epochs(run)


def device_kind() -> tuple[str, str]:
    """(JAX's first device kind, JAX's version), asked in a child process: this one must not
    hold the accelerator while the runs train."""
    code = "import jax; print(jax.devices()[0].device_kind, jax.__version__, sep='|')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    kind, _, version = out.stdout.strip().rpartition("\n")[2].partition("|")
    return kind or "?", version or "?"


class Reproduction:
    """The runs, trained one after another under one budget; OUT rewritten after each."""

    def __init__(self, runs: list[sweep.Run], root: pathlib.Path, out: pathlib.Path, args):
        self.runs, self.root, self.out, self.args = runs, root, out, args
        self.records: list[dict] = []
        self.began = time.monotonic()
        self.kind, self.jax_version = device_kind()

    def train(self) -> None:
        """Trains the runs in order within the budget; packs OUT after each."""
        env = {
            **os.environ,
            "JAX_COMPILATION_CACHE_DIR": str(self.root / "jax_cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        }
        rates: dict[str, float] = {}
        for i, run in enumerate(self.runs, start=1):
            run_dir = RunDir(self.root / run.name)
            left = self.args.budget_s - (time.monotonic() - self.began)
            expected = expected_seconds(run, rates)
            seconds = 0.0
            if run_dir.is_finished():
                status = "finished before"
            elif left <= 0 or (expected is not None and expected > left):
                status = f"skipped (expected {expected or 0:.0f} s, {left:.0f} s left)"
            else:
                print(f"[{i}/{len(self.runs)}] {run.name}: training", flush=True)
                command = [sys.executable, "-m", "vit_locality.main", *run.args(self.root)]
                began = time.monotonic()
                code = process_group.run(command, timeout_s=left, env=env, own_group=False)
                seconds = time.monotonic() - began
                rates[run.name] = seconds / image_epochs(run)
                if code == 0 and run_dir.is_finished():
                    status = "finished"
                else:
                    status = "stopped at the budget" if code is None else f"failed (exit {code})"
            print(f"[{i}/{len(self.runs)}] {run.name}: {status}", flush=True)
            self.records.append({"name": run.name, "status": status, "seconds": round(seconds, 1)})
            self.pack()

    def finished(self) -> list[str]:
        return [r["name"] for r in self.records if r["status"].startswith("finished")]

    def pack(self) -> None:
        """OUT from what is finished so far; then, with --archive, OUT as one .tar.gz."""
        names = self.finished()
        for name in names:
            source, target = self.root / name, self.out / "runs" / name
            target.mkdir(parents=True, exist_ok=True)
            for file in KEPT:
                if (source / file).is_file():
                    shutil.copy2(source / file, target / file)
            if (source / "plots").is_dir():
                shutil.copytree(source / "plots", target / "plots", dirs_exist_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        if names:
            write_report([self.out / "runs"], self.out / "report")
            (self.out / "summary.md").write_text("\n".join(summary(self.out)) + "\n")
        record = {
            "device_kind": self.kind,
            "jax": self.jax_version,
            "command": " ".join(["python scripts/reproduce.py", *self.args.argv]),
            "budget_s": self.args.budget_s,
            "img_per_s": self.args.img_per_s,
            "wall_s": round(time.monotonic() - self.began, 1),
            "runs": self.records,
        }
        partial = self.out / "reproduce.json.partial"  # a kill never leaves half a file
        partial.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(partial, self.out / "reproduce.json")
        if self.args.archive:
            archive(self.out, pathlib.Path(self.args.archive))


def archive(folder: pathlib.Path, target: pathlib.Path) -> None:
    """`folder` (under its own name) as the .tar.gz `target`, replaced in one rename."""
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    os.replace(partial, target)


def summary(out: pathlib.Path) -> list[str]:
    """OUT/summary.md's lines: every run's length and headline numbers, the per-condition table
    (the README's results table), and whether the split holds."""
    runs = load_runs([out / "runs"])
    lines = table(
        ["run", "steps", "epochs", "top-1 (%)", "min MAD, layer 1", "train img/s"],
        [
            [
                run.name,
                str(run.final_step),
                f"{run.config['total_epochs']:g}",
                number(run.top1, 2),
                number(run.summary("min_mad_first_layer"), 3),
                f"{median_img_per_s(run.rows):.0f}",
            ]
            for run in runs
        ],
    )
    groups = group_runs(runs)
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
    lines += ["", *table(["dataset", "condition", "seeds", *metrics], rows), ""]
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


def number(value: float | None, digits: int) -> str:
    return mean_std([] if value is None else [value], digits)


def median_img_per_s(rows: list[dict]) -> float:
    """The median training throughput of a run's train rows, the first (compilation) left out."""
    speeds = sorted(r["train/img_per_s"] for r in rows if "train/img_per_s" in r)[1:]
    return speeds[len(speeds) // 2] if speeds else float("nan")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/reproduce.py")
    parser.add_argument("--out", required=True, help="results folder, e.g. results/DATE-DEV-cutmix")
    parser.add_argument("--budget_s", type=float, default=420.0, help="wall seconds for training")
    parser.add_argument("--data", default="data", help="holds cifar10-sample/, fashion-mnist/")
    parser.add_argument("--root", default="runs/reproduce", help="the runs' workdirs")
    parser.add_argument(
        "--img_per_s", type=float, default=None, help="step throughput here: sizes the first pair"
    )
    parser.add_argument("--archive", default=None, help="also OUT as this .tar.gz, after each run")
    parser.add_argument("--tiny", action="store_true", help="tiny ViT, a few steps (CPU check)")
    parser.add_argument("--max_runs", type=int, default=None, help="only the first N by priority")
    args = parser.parse_args(argv)
    args.argv = argv
    for folder in ("cifar10-sample", "fashion-mnist"):
        if not (pathlib.Path(args.data) / folder).is_dir():
            print(f"error: --data={args.data} has no {folder}/ (copy it from ../shared/data)",
                  file=sys.stderr)  # fmt: skip
            return 2
    runs = plan_runs(args.data, args.tiny, args.img_per_s, args.budget_s)[: args.max_runs]
    reproduction = Reproduction(runs, pathlib.Path(args.root), pathlib.Path(args.out), args)

    process_group.raise_on_sigterm()
    try:
        reproduction.train()
    except process_group.Stopped:
        print("SIGTERM: packing the runs finished so far", flush=True)
        reproduction.pack()
    finished = reproduction.finished()
    print(f"wrote {args.out}: {len(finished)} of {len(runs)} runs finished", flush=True)
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
