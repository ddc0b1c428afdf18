"""`scripts/reproduce.py`: sizing the first pair from a throughput, and, end to end on the real
CIFAR-10 sample with a tiny ViT: priority order, results packed after every run (a kill leaves
the finished runs), resume, the time budget."""

import json
import os
import signal
import subprocess
import sys
import tarfile

import pytest

from .conftest import CIFAR10_SAMPLE, DATA_DIR, FASHION_MNIST, REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import reproduce  # noqa: E402

needs_data = pytest.mark.skipif(
    not (CIFAR10_SAMPLE / "test_batch.bin").exists() or not FASHION_MNIST.is_dir(),
    reason="real data absent",
)


@pytest.mark.parametrize(
    "img_per_s, budget_s, expected",
    [
        # 0.6 * 300 / 2 - 40 = 50 s per run at 0.7 * 20,000 img/s: 700,000 images, 11.7 epochs
        # of Fashion-MNIST (under 50), 137.7 of the CIFAR-10 sample.
        (20_000, 300, ("c10", 137.0)),
        # 0.6 * 540 / 2 - 40 = 122 s at 70,000 img/s: 142 epochs of Fashion-MNIST, capped.
        (100_000, 540, ("fmnist", 100.0)),
        # 0.6 * 400 / 2 - 40 = 80 s at 42,000 img/s: 56 epochs of Fashion-MNIST.
        (60_000, 400, ("fmnist", 56.0)),
        # Less than the per-run overhead: at least one epoch.
        (1_000, 100, ("c10", 1.0)),
    ],
)
def test_the_first_pair_gets_the_epochs_its_share_of_the_budget_allows(
    img_per_s, budget_s, expected
):
    assert reproduce.size_first_pair(img_per_s, budget_s) == expected


def test_a_sized_run_scales_its_schedule_and_leads():
    runs = reproduce.plan_runs("data", tiny=False, img_per_s=60_000, budget_s=400)
    assert [r.name for r in runs[:4]] == [
        "fmnist_baseline_seed0",
        "fmnist_cm_seed0",
        "fmnist_ls_seed0",
        "fmnist_cm+ls_seed0",
    ]
    fmnist, c10 = runs[1].overrides, runs[-1].overrides
    steps = 56 * 60000 // 128
    assert fmnist["total_epochs"] == "56" and fmnist["warmup_epochs"] == "5.6"
    assert fmnist["eval_every_steps"] == str(steps // 20)
    assert fmnist["analysis.every_epochs"] == "11.2" and fmnist["data.dir"] == "data/fashion-mnist"
    assert c10["total_epochs"] == "100" and "eval_every_steps" not in c10  # the sweep's own


def reproduce_command(tmp_path, *args):
    """One CPU device, as the GPU run has one GPU. (With 8 emulated CPU devices on 2 cores, the
    on-device input's training can deadlock in XLA:CPU's all-reduce rendezvous.)"""
    command = [sys.executable, "scripts/reproduce.py", "--tiny", f"--data={DATA_DIR}"]
    command += [f"--root={tmp_path / 'runs'}", f"--out={tmp_path / 'out'}", *args]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    return command, env


@needs_data
def test_a_killed_reproduction_leaves_its_finished_runs_and_resumes(tmp_path):
    archive = tmp_path / "out.tar.gz"
    command, env = reproduce_command(tmp_path, "--max_runs=3", f"--archive={archive}")
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    lines = []
    for line in process.stdout:  # SIGKILL, to it and its run, while the third run trains
        lines.append(line)
        if line.startswith("[3/3] c10_ls_seed0: training"):
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert lines[-1].startswith("[3/3] c10_ls_seed0: training"), "".join(lines)
    with tarfile.open(archive) as packed:
        record = json.load(packed.extractfile("out/reproduce.json"))
        summary = packed.extractfile("out/summary.md").read().decode().splitlines()
        names = packed.getnames()
    assert [(r["name"], r["status"]) for r in record["runs"]] == [
        ("c10_baseline_seed0", "finished"),  # Baseline and +CutMix first
        ("c10_cm_seed0", "finished"),
    ]
    assert record["device_kind"] == "cpu"
    assert "out/runs/c10_cm_seed0/plots/mad_per_head.png" in names
    assert not any("checkpoints" in name for name in names)
    assert summary[0] == "| run | steps | epochs | top-1 (%) | min MAD, layer 1 | train img/s |"
    assert [row.split(" | ")[1:3] for row in summary[2:4]] == [["40", "0.5"], ["40", "0.5"]]

    # Again, with no time left: the two are not retrained, the third waits.
    command, env = reproduce_command(tmp_path, "--max_runs=3", "--budget_s=0")
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = tmp_path / "out"
    record = json.loads((out / "reproduce.json").read_text())
    statuses = [r["status"] for r in record["runs"]]
    assert statuses[:2] == ["finished before"] * 2 and statuses[2].startswith("skipped (")
    for name in ("c10_baseline_seed0", "c10_cm_seed0"):
        config = json.loads((out / "runs" / name / "config.json").read_text())
        assert config["data"]["on_device"] and config["data"]["source"] == "files"
        assert (out / "runs" / name / "locality.json").is_file()
    assert (out / "report" / "report.md").read_text().startswith("# Attention locality report")
    summary = (out / "summary.md").read_text().splitlines()
    table = summary[summary.index("") + 1 :]
    assert table[0].startswith("| dataset | condition | seeds | top-1 (%) | min MAD, layer 1 |")
    assert [row.split(" | ")[1] for row in table[2:4]] == ["baseline", "cm"]
    assert summary[-1].startswith("- CIFAR-10: the split ")
