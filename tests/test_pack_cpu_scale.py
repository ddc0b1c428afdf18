"""scripts/pack_cpu_scale.py: the runs' small files (no checkpoints), the report with the curve
and the gap table, a README; --min_step refuses runs not yet there."""

import json
import subprocess
import sys

from configs import cifar10_baseline

from .conftest import REPO_ROOT
from .helpers import make_run, write_curve


def pack(*args):
    return subprocess.run(
        [sys.executable, "scripts/pack_cpu_scale.py", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_pack_copies_the_small_files_and_writes_the_report(tmp_path):
    runs = tmp_path / "runs"
    cutmix = cifar10_baseline.get_config()
    cutmix.mix.cutmix_alpha, cutmix.mix.prob = 1.0, 1.0
    base = make_run(runs, "baseline_seed0", cifar10_baseline.get_config(), 50.0, [[0.4, 0.5]] * 2)
    cm = make_run(runs, "cutmix_seed0", cutmix, 52.0)  # no locality.json yet
    write_curve(base, [(250, 0.46), (500, 0.45)])
    write_curve(cm, [(250, 0.44), (500, 0.41)])
    with (cm / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 510, "train/img_per_s": 100.0})[:-5])  # being written
    plan = {"steps_per_epoch": 39, "total_steps": 8000, "warmup_steps": 195}
    for workdir in (base, cm):
        (workdir / "plan.json").write_text(json.dumps(plan))
        (workdir / "checkpoints" / "500").mkdir(parents=True)
        (workdir / "checkpoints" / "500" / "state").write_bytes(b"x" * 100)
        (workdir / "lock.json").write_text("{}")
        (workdir / "plots").mkdir()
        (workdir / "plots" / "training_curves.png").write_bytes(b"\x89PNG")
    (runs / "launches.txt").write_text("2026-12-02T04:53:40+00:00 baseline_seed0 pid 1\n")
    out = tmp_path / "results" / "2026-12-02-cpu-scale"

    result = pack(f"--runs={runs}", f"--out={out}", "--min_step=500")
    assert result.returncode == 0, result.stderr
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    runs_files = [f for f in files if not f.startswith("report/") and f != "README.md"]
    assert runs_files == [
        "baseline_seed0/config.json",
        "baseline_seed0/locality.json",
        "baseline_seed0/metrics.jsonl",
        "baseline_seed0/plan.json",
        "baseline_seed0/plots/training_curves.png",
        "cutmix_seed0/config.json",
        "cutmix_seed0/metrics.jsonl",
        "cutmix_seed0/plan.json",
        "cutmix_seed0/plots/training_curves.png",
    ]
    assert (
        (out / "cutmix_seed0" / "metrics.jsonl")
        .read_text()
        .endswith('"locality/min_mad_first_layer": 0.41}\n')
    )  # the half-written last line left out
    report = (out / "report" / "report.md").read_text()
    assert "| 500 | 0.450 | 0.410 | +0.040 |" in report
    assert (out / "report" / "min_mad_steps.png").read_bytes()[:4] == b"\x89PNG"
    readme = (out / "README.md").read_text()
    assert "| `cutmix_seed0` | cm | 500 of 8,000 | 52.0 | 0.410 (step 500) |" in readme
    assert "baseline_seed0 pid 1" in readme

    result = pack(f"--runs={runs}", f"--out={out}", "--min_step=4000")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "before --min_step=4000" in result.stderr
    assert (out / "README.md").is_file()  # left as it was
