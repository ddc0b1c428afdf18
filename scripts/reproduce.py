"""Reproduce the CutMix split on real images within a time budget, two runs at a time.

    python scripts/reproduce.py --out=results/DATE-DEVICE-cutmix [--budget_s=324] [--data=data]
        [--root=runs/reproduce] [--img_per_s=R] [--device_kind=KIND] [--archive=FILE.tar.gz]
        [--tiny] [--max_pairs=N] [--max_steps=N]

Runs from a plain copy of the repository (nothing pip-installed; no TensorFlow needed).

1. Plans the runs of `configs/sweeps/reproduce.py` as pairs, in the order the finding needs them
   (`priority`): Baseline and +CutMix on Fashion-MNIST (60,000 real images: the data regime
   closest to the paper's 50,000 that is here), then on the CIFAR-10 sample, then +LS and
   +CutMix+LS on each, then seed 1.
2. Trains the two runs of a pair at the same time, as two `python -m vit_locality.main`
   processes on the one device (a batch-128 step of this ViT leaves a GPU mostly idle between
   kernel launches), with JAX's persistent compilation cache in ROOT/jax_cache (or the
   environment's JAX_COMPILATION_CACHE_DIR). Each pair trains toward the paper's PAPER_STEPS
   optimizer steps per run (`--max_steps`), its cosine schedule over the steps that fit the time
   left (`pair_steps`): the first pair's seconds per step come from `--img_per_s` (the bare bf16
   train step's throughput at the runs' batch on the first pair's model, one process), later
   pairs' from the pairs before them, scaled by model FLOPs (`vit_locality.flops`). A pair
   starts only when `min_steps` fit. At the end of `--budget_s` every run still training gets
   SIGTERM (it checkpoints; a rerun resumes it) and is packed as stopped at its last step.
3. After every pair that trained, rewrites OUT: each run's config.json, plan.json,
   metrics.jsonl, locality.json (its latest analysis), plots/ and train.log (its output; no
   checkpoints) in OUT/runs/NAME, the report (OUT/report), OUT/summary.md (per run: steps
   reached and planned, top-1, first-layer min MAD and its step; per condition: mean ± std over
   seeds; whether every CutMix run is below every run without it) and OUT/reproduce.json; with
   `--archive`, the same folder as one .tar.gz, replaced atomically. A kill at any moment leaves
   what was packed before it.

DATA holds `cifar10-sample/` and `fashion-mnist/` (copies of the real datasets). `--tiny` runs the
same code paths with a tiny ViT and a few steps (tests/test_reproduce.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shutil
import sys
import tarfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a plain copy: `python scripts/X.py` puts only scripts/ there
from vit_locality import flops, process_group, sweep  # noqa: E402
from vit_locality.datasets import DATASETS  # noqa: E402
from vit_locality.plan import steps_per_epoch  # noqa: E402
from vit_locality.report import write_report  # noqa: E402
from vit_locality.report.conditions import DATASET_NAMES, group_runs, load_runs  # noqa: E402
from vit_locality.report.tables import mean_std, table  # noqa: E402
from vit_locality.workdir import RunDir  # noqa: E402

SWEEP = REPO / "configs" / "sweeps" / "reproduce.py"
DATASET_ORDER = ("fmnist", "c10")
CONDITION_PAIRS = (("baseline", "cm"), ("ls", "cm+ls"))
TRAIN_SIZES = {"c10": 5085, "fmnist": 60000}  # training images of DATA's two datasets
BATCH_SIZE = 128  # the configs' batch (the paper's); --img_per_s is measured at this size
PAPER_STEPS = 39_000  # the paper's optimizer steps: 50,000 images / 128 x 100 epochs
# Planning guesses, stated as such: each of two runs at once gets at least half the one-process
# throughput (a device kept busy shares evenly; a launch-bound GPU gives each more, and the pair
# ends early, leaving its time to the next); training reaches STEP_EFFICIENCY of the bare step
# (input, logging, evaluations); RUN_OVERHEAD_S per run for start-up, compilation and the final
# evaluations.
CONCURRENT_SHARE = 0.5
STEP_EFFICIENCY = 0.7
RUN_OVERHEAD_S = 40.0
SIZES = {  # steps per run at most; a pair starts only when min_steps fit; evaluations and
    # locality analyses per run
    "full": {"max_steps": PAPER_STEPS, "min_steps": 1000, "evals": 20, "analyses": 10},
    "tiny": {"max_steps": 40, "min_steps": 4, "evals": 2, "analyses": 2},
}
TINY = {
    "model.width": "32",
    "model.depth": "2",
    "model.num_heads": "2",
    "model.mlp_dim": "64",
    "model.dtype": "float32",
    "batch_size": "64",
}
KEPT = ("config.json", "plan.json", "metrics.jsonl", "locality.json", "train.log")


def dataset_of(run: sweep.Run) -> str:
    return run.name.split("_", 1)[0]


def condition_of(run: sweep.Run) -> str:
    return run.name.split("_seed")[0].split("_", 1)[1]


def priority(run: sweep.Run) -> tuple[int, int, int, int]:
    """Seed 0 before seed 1; Baseline / +CutMix before +LS / +CutMix+LS; Fashion-MNIST before
    the CIFAR-10 sample; within a pair, the run without CutMix first."""
    seed = int(run.name.rsplit("_seed", 1)[1])
    condition = condition_of(run)
    pair = next(i for i, p in enumerate(CONDITION_PAIRS) if condition in p)
    return seed, pair, DATASET_ORDER.index(dataset_of(run)), CONDITION_PAIRS[pair].index(condition)


def plan_pairs(data: str, tiny: bool) -> list[tuple[sweep.Run, sweep.Run]]:
    """The sweep's runs reading DATA, as pairs in priority order (not yet sized)."""
    entries, seeds = sweep.load_sweep(SWEEP)
    overrides = {"batch_size": str(BATCH_SIZE), **(TINY if tiny else {})}
    runs = sorted(
        (
            dataclasses.replace(
                run,
                overrides={
                    **run.overrides,
                    "data.dir": str(
                        pathlib.Path(data) / pathlib.Path(run.overrides["data.dir"]).name
                    ),
                },
            )
            for run in sweep.expand(entries, seeds, global_overrides=overrides)
        ),
        key=priority,
    )
    return list(zip(runs[::2], runs[1::2], strict=True))


def step_flops(run: sweep.Run) -> int:
    """Model FLOPs of one train step of `run` (its resolved config)."""
    config = sweep.resolve_config(run)
    info, model = DATASETS[config.dataset], config.model
    shape = flops.VitShape(
        info.image_size, info.channels, model.patch_size, model.width, model.depth,
        model.mlp_dim, info.num_classes, num_prefix_tokens=int(model.pool == "cls"),
    )  # fmt: skip
    return flops.train_step_flops(shape, config.batch_size)


def first_seconds_per_flop(img_per_s: float, run: sweep.Run) -> float:
    """Wall seconds per model FLOP of each of two runs at once, from the bare step's one-process
    throughput `img_per_s` on `run`'s model."""
    batch = int(run.overrides["batch_size"])
    seconds_per_step = batch / (img_per_s * CONCURRENT_SHARE * STEP_EFFICIENCY)
    return seconds_per_step / step_flops(run)


def pair_steps(seconds: float, seconds_per_step: float | None, max_steps: int) -> int:
    """Steps each run of a pair trains in `seconds` (less RUN_OVERHEAD_S) at `seconds_per_step`;
    `max_steps` at most, and when the speed is not known yet."""
    if seconds_per_step is None:
        return max_steps
    return min(max_steps, int(max(seconds - RUN_OVERHEAD_S, 0.0) / seconds_per_step))


def sized(run: sweep.Run, steps: int, sizes: dict) -> sweep.Run:
    """`run` at `steps` optimizer steps, the schedule's other lengths scaled to it: warmup 10%
    of it, `sizes["evals"]` evaluations and `sizes["analyses"]` locality analyses, 4
    checkpoints."""
    batch = int(run.overrides["batch_size"])
    epoch = steps_per_epoch(TRAIN_SIZES[dataset_of(run)], batch)
    return dataclasses.replace(
        run,
        overrides={
            **run.overrides,
            "total_steps": str(steps),
            "warmup_epochs": f"{steps / 10 / epoch:.6g}",
            "eval_every_steps": str(max(1, steps // sizes["evals"])),
            "evals.locality.every_steps": str(max(1, steps // sizes["analyses"])),
            "ckpt_every_steps": str(max(1, steps // 4)),
            "log_every_steps": str(max(1, min(200, steps // 100))),
        },
    )


def planned_steps(run_dir: RunDir) -> int | None:
    """The steps a run started before plans (its saved config), so that it resumes unchanged."""
    saved = run_dir.read_config()
    return None if saved is None else int(saved["total_steps"])


def trained_to(run_dir: RunDir) -> int:
    """The last step of a run's train rows (0 before any)."""
    return max((r["step"] for r in run_dir.read_metrics() if "train/loss" in r), default=0)


class Reproduction:
    """The pairs, each trained at once, under one budget; OUT rewritten after each."""

    def __init__(self, pairs, root: pathlib.Path, out: pathlib.Path, args, sizes: dict):
        self.pairs, self.root, self.out, self.args, self.sizes = pairs, root, out, args, sizes
        self.records: list[dict] = []
        self.began = time.monotonic()
        self.seconds_per_flop: float | None = None
        if args.img_per_s:
            self.seconds_per_flop = first_seconds_per_flop(args.img_per_s, pairs[0][0])

    def left(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.began)

    def train(self) -> None:
        """Trains the pairs in order within the budget; packs OUT after each that trained."""
        env = {
            "JAX_COMPILATION_CACHE_DIR": str(self.root / "jax_cache"),
            **os.environ,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # two processes share the device
        }
        for i, pair in enumerate(self.pairs, start=1):
            names = " and ".join(run.name for run in pair)
            dirs = [RunDir(self.root / run.name) for run in pair]
            if all(run_dir.is_finished() for run_dir in dirs):
                self.record(pair, dirs, ["finished before"] * 2, 0.0)
                continue
            started = [planned_steps(d) for d in dirs if planned_steps(d) is not None]
            seconds_per_step = self.seconds_per_flop and self.seconds_per_flop * step_flops(pair[0])
            steps = started[0] if started else pair_steps(
                self.left(), seconds_per_step, self.sizes["max_steps"]
            )  # fmt: skip
            if self.left() <= 0 or steps < self.sizes["min_steps"]:
                reason = "not started (" + (
                    f"{steps} steps fit the {self.left():.0f} s left)" if self.left() > 0
                    else "no time left)"
                )  # fmt: skip
                self.record(pair, dirs, [reason] * 2, 0.0)
                continue
            print(f"[pair {i}/{len(self.pairs)}] {names}: training {steps} steps", flush=True)
            runs = [sized(run, steps, self.sizes) for run in pair]
            logs = [(self.root / run.name).with_suffix(".log") for run in runs]
            self.root.mkdir(parents=True, exist_ok=True)
            before = [trained_to(d) for d in dirs]
            began = time.monotonic()
            try:
                commands = [[sys.executable, "-m", "vit_locality.main", *r.args(self.root)]
                            for r in runs]  # fmt: skip
                with logs[0].open("a") as log0, logs[1].open("a") as log1:
                    codes = process_group.run_together(
                        commands, timeout_s=self.left(), env=env, outputs=[log0, log1],
                        own_group=False, grace_s=self.args.grace_s,
                    )  # fmt: skip
            except process_group.Stopped:  # main packs
                self.record(pair, dirs, [None, None], time.monotonic() - began, logs)
                raise
            seconds = time.monotonic() - began
            self.record(pair, dirs, codes, seconds, logs)
            self.pack()
            done = max(trained_to(d) - b for d, b in zip(dirs, before, strict=True))
            if done:
                self.seconds_per_flop = seconds / (done * step_flops(pair[0]))

    def record(self, pair, dirs, codes, seconds: float, logs=None) -> None:
        """Each run's status, from its exit code (0, a code, None when stopped at the budget) or
        a text; with `logs`, each run's output is kept as its workdir's train.log."""
        for run, run_dir, code in zip(pair, dirs, codes, strict=True):
            if isinstance(code, str):
                status = code
            else:
                step, total = trained_to(run_dir), run_dir.final_step()
                if code == 0 and run_dir.is_finished():
                    status = "finished"
                elif code is None:
                    status = f"stopped at step {step} of {total}"
                else:
                    status = f"failed (exit {code}) at step {step} of {total}"
            print(f"  {run.name}: {status}", flush=True)
            self.records.append({"name": run.name, "status": status, "seconds": round(seconds, 1)})
        for run, log in zip(pair, logs, strict=True) if logs else ():
            if log.is_file() and (self.root / run.name).is_dir():
                shutil.copy2(log, self.root / run.name / "train.log")

    def packed(self) -> list[str]:
        """The runs OUT holds: every run that trained or finished, in the order trained."""
        return [
            r["name"]
            for r in self.records
            if not r["status"].startswith("not started") and (self.root / r["name"]).is_dir()
        ]

    def pack(self) -> None:
        """OUT from the runs so far: their files, the report, summary.md, reproduce.json."""
        names = self.packed()
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
        self.write_record()

    def write_record(self) -> None:
        """OUT/reproduce.json (every pair's status so far); then, with --archive, OUT as one
        .tar.gz."""
        self.out.mkdir(parents=True, exist_ok=True)
        record = {
            "device_kind": self.args.device_kind,
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
    """OUT/summary.md's lines: every run's steps (reached, planned) and headline numbers (the
    first-layer min MAD of its latest analysis, and that analysis's step), the per-condition
    table (the README's results table), and whether the split holds."""
    runs = load_runs([out / "runs"])
    lines = table(
        ["run", "steps", "of", "top-1 (%)", "min MAD, layer 1", "at step", "train img/s"],
        [
            [
                run.name,
                str(run.last_step),
                str(run.final_step),
                number(run.top1, 2),
                number(run.summary("min_mad_first_layer"), 3),
                str(run.locality["step"]) if run.locality else "–",
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
    parser.add_argument("--budget_s", type=float, default=324.0, help="wall seconds for training")
    parser.add_argument("--data", default="data", help="holds cifar10-sample/, fashion-mnist/")
    parser.add_argument("--root", default="runs/reproduce", help="the runs' workdirs")
    parser.add_argument(
        "--img_per_s", type=float, default=None, help="step throughput here: sizes the first pair"
    )
    parser.add_argument("--device_kind", default="not given", help="recorded in reproduce.json")
    parser.add_argument("--archive", default=None, help="also OUT as this .tar.gz, after each pair")
    parser.add_argument("--tiny", action="store_true", help="tiny ViT, a few steps (CPU check)")
    parser.add_argument("--max_pairs", type=int, default=None, help="only the first N pairs")
    parser.add_argument("--max_steps", type=int, default=None, help="steps per run at most")
    parser.add_argument(
        "--grace_s", type=float, default=30.0, help="after SIGTERM, for a run's checkpoint"
    )
    args = parser.parse_args(argv)
    args.argv = argv
    for folder in ("cifar10-sample", "fashion-mnist"):
        if not (pathlib.Path(args.data) / folder).is_dir():
            print(f"error: --data={args.data} has no {folder}/ (copy it from ../shared/data)",
                  file=sys.stderr)  # fmt: skip
            return 2
    sizes = dict(SIZES["tiny" if args.tiny else "full"])
    if args.max_steps:
        sizes["max_steps"] = args.max_steps
    pairs = plan_pairs(args.data, args.tiny)[: args.max_pairs]
    reproduction = Reproduction(pairs, pathlib.Path(args.root), pathlib.Path(args.out), args, sizes)

    process_group.raise_on_sigterm()
    try:
        reproduction.train()
    except process_group.Stopped:
        print("SIGTERM: packing the runs so far", flush=True)
        reproduction.pack()
    else:
        reproduction.write_record()  # the pairs that did not start, without re-rendering
    packed = reproduction.packed()
    print(f"wrote {args.out}: {len(packed)} runs of {2 * len(pairs)}", flush=True)
    return 0 if packed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
