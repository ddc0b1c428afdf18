"""Packs the runs of `configs/sweeps/cpu_scale.py` into a results folder for the repository.

    python scripts/pack_cpu_scale.py --runs=/work/runs-cpu-scale \\
        --out=results/2026-12-02-cpu-scale [--min_step=4000]

Copies, for every run in RUNS (a directory holding config.json): config.json, plan.json,
metrics.jsonl (its complete lines: the run may be writing), locality.json and plots/ when the run
has written them; never checkpoints/, tensorboard/ or lock.json. Then writes OUT/report/
(`python -m vit_locality.report`: the first-layer min MAD against steps, min_mad_steps.png, and
the table of its value and the Baseline − CutMix gap at every analysis step) and OUT/README.md:
each run's steps, last top-1 and min MAD, its train time from the logged throughput, and
RUNS/launches.txt (when and from which commit each run was started). Safe while the runs train:
it only reads their workdirs. `--min_step=N` refuses (one line, exit 2) unless every run has
reached step N. OUT is replaced.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from vit_locality.cli import ArgumentParser, fail  # noqa: E402
from vit_locality.errors import UserError  # noqa: E402
from vit_locality.report import write_report  # noqa: E402
from vit_locality.report.conditions import group_runs, load_runs  # noqa: E402
from vit_locality.report.tables import MIN_MAD_KEY, table  # noqa: E402

FILES = ("config.json", "plan.json", "locality.json")


def pack_run(workdir: pathlib.Path, out: pathlib.Path) -> None:
    """The run's small files into `out` (metrics.jsonl up to its last complete line)."""
    out.mkdir(parents=True)
    for name in FILES:
        if (workdir / name).is_file():
            shutil.copy2(workdir / name, out / name)
    metrics = (
        (workdir / "metrics.jsonl").read_bytes() if (workdir / "metrics.jsonl").exists() else b""
    )
    (out / "metrics.jsonl").write_bytes(metrics[: metrics.rfind(b"\n") + 1])
    if (workdir / "plots").is_dir():
        shutil.copytree(workdir / "plots", out / "plots")


def train_seconds(rows: list[dict], batch_size: int) -> float:
    """Seconds of training the train rows account for: each logged interval's images over its
    img/s (evaluations and restarts not counted; a step logged twice counts once)."""
    total, previous = 0.0, 0
    for row in sorted((r for r in rows if "train/img_per_s" in r), key=lambda r: r["step"]):
        total += (row["step"] - previous) * batch_size / row["train/img_per_s"]
        previous = row["step"]
    return total


def readme(out: pathlib.Path, runs_root: pathlib.Path) -> str:
    groups = group_runs(load_runs([out]))
    rows = []
    for group in groups:
        for run in group.runs:
            curve = run.curve(MIN_MAD_KEY)
            minutes = round(train_seconds(run.rows, run.config["batch_size"]) / 60)
            last_mad = (
                f"{list(curve.values())[-1]:.3f} (step {list(curve)[-1]:,})" if curve else "–"
            )
            rows.append(
                [
                    f"`{run.name}`",
                    group.label,
                    f"{run.last_step:,} of {run.final_step or 0:,}",
                    "–" if run.top1 is None else f"{run.top1:.1f}",
                    last_mad,
                    f"{minutes // 60} h {minutes % 60:02d} min",
                ]
            )
    config = groups[0].runs[0].config
    m = config["model"]
    launches = runs_root / "launches.txt"
    lines = [
        f"# Reduced-scale CPU probe: Baseline vs +CutMix ({out.name})",
        "",
        "A reduced-scale probe of the paper's finding, not the paper's setting: "
        f"`configs/sweeps/cpu_scale.py` (ViT width {m['width']}, depth {m['depth']}, "
        f"{m['num_heads']} heads, MLP {m['mlp_dim']}, patch {m['patch_size']}; the real CIFAR-10 "
        f"sample, 5,085 train / 1,017 test images; batch {config['batch_size']}, "
        f"{config.get('schedule', 'cosine')} learning rate after a {config['warmup_epochs']}-epoch "
        "warmup; one CPU core per run at nice 19, on a 2-core AMD EPYC VM shared with other work).",
        "",
        *table(
            ["run", "condition", "steps", "last top-1 (%)", "last min MAD, layer 1", "train time"],
            rows,
        ),
        "",
        "Train time: from the logged throughput (evaluations and restarts not counted). The "
        "curve and the gap at every analysis step: [report/report.md](report/report.md) "
        "(figure `report/min_mad_steps.png`). Each run folder holds config.json, plan.json, "
        "metrics.jsonl and, once the run has written them, locality.json and plots/.",
        "",
        f"Packed with `python scripts/pack_cpu_scale.py --runs={runs_root} --out={out}`.",
        "",
    ]
    if launches.is_file():
        lines += ["Starts (`launches.txt`):", "", "```", launches.read_text().rstrip(), "```", ""]
    return "\n".join(lines)


def pack(runs_root: pathlib.Path, out: pathlib.Path, min_step: int = 0) -> pathlib.Path:
    """Packs every run under `runs_root` into `out` (replaced); returns OUT/README.md."""
    workdirs = sorted(p for p in runs_root.iterdir() if (p / "config.json").is_file())
    if not workdirs:
        raise UserError(f"{runs_root} holds no run: no config.json in its subdirectories")
    for run in load_runs(workdirs):
        if run.last_step < min_step:
            raise UserError(
                f"{run.path} is at step {run.last_step}, before --min_step={min_step}: "
                "pack it later"
            )
    if out.exists():
        shutil.rmtree(out)
    for workdir in workdirs:
        pack_run(workdir, out / workdir.name)
    write_report([out], out / "report")
    (out / "README.md").write_text(readme(out, runs_root))
    return out / "README.md"


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="python scripts/pack_cpu_scale.py", allow_abbrev=False)
    parser.add_argument("--runs", required=True, help="the sweep's root (its runs' workdirs)")
    parser.add_argument("--out", required=True, help="the results folder (replaced)")
    parser.add_argument("--min_step", type=int, default=0, help="every run at least at step N")
    args = parser.parse_args(argv)
    try:
        print(f"wrote {pack(pathlib.Path(args.runs), pathlib.Path(args.out), args.min_step)}")
    except UserError as e:
        fail(e)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
