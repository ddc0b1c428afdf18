"""`scripts/reproduce.py --tiny`: the GPU reproduction's code paths on this CPU, end to end on
the real CIFAR-10 sample: priority order, the time budget, resume, and the results layout."""

import json
import os
import subprocess
import sys
import tarfile

import pytest

from .conftest import CIFAR10_SAMPLE, FASHION_MNIST, REPO_ROOT, SHARED_DATA

pytestmark = pytest.mark.skipif(
    not (CIFAR10_SAMPLE / "test_batch.bin").exists() or not FASHION_MNIST.is_dir(),
    reason="real data absent",
)


def reproduce(tmp_path, *args):
    """One CPU device, as the GPU run has one GPU. (With 8 emulated CPU devices on 2 cores, the
    on-device input's training can deadlock in XLA:CPU's all-reduce rendezvous.)"""
    command = [sys.executable, "scripts/reproduce.py", "--tiny", f"--data={SHARED_DATA}"]
    command += [f"--root={tmp_path / 'runs'}", f"--out={tmp_path / 'out'}", *args]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    if "--archive" in args:  # the folder became out.tar.gz
        with tarfile.open(tmp_path / "out.tar.gz") as archive:
            assert not (tmp_path / "out").exists()
            return json.load(archive.extractfile("out/reproduce.json")), archive.getnames()
    return json.loads((tmp_path / "out" / "reproduce.json").read_text())


def test_the_reproduction_runs_by_priority_and_packs_its_results(tmp_path):
    record = reproduce(tmp_path, "--max_runs=3")
    assert [r["name"] for r in record["runs"]] == [
        "c10_baseline_seed0",  # Baseline and +CutMix first
        "c10_cm_seed0",
        "c10_ls_seed0",
    ]
    assert all(r["status"] == "finished" for r in record["runs"])
    assert record["device_kind"] == "cpu"
    out = tmp_path / "out"
    for run in record["runs"]:
        files = {
            p.relative_to(out / "runs" / run["name"]).as_posix()
            for p in (out / "runs" / run["name"]).rglob("*")
        }
        assert {"config.json", "plan.json", "metrics.jsonl", "locality.json"} <= files
        assert "plots/mad_per_head.png" in files and not any("checkpoints" in f for f in files)
        config = json.loads((out / "runs" / run["name"] / "config.json").read_text())
        assert config["data"]["on_device"] and config["data"]["source"] == "files"
    assert (out / "report" / "report.md").read_text().startswith("# Attention locality report")
    summary = (out / "summary.md").read_text().splitlines()
    assert summary[0].startswith("| dataset | condition | seeds | top-1 (%) | min MAD, layer 1 |")
    assert [row.split(" | ")[1] for row in summary[2:5]] == ["baseline", "cm", "ls"]
    assert summary[-1].startswith("- CIFAR-10: the split ")

    # Again, with a fourth run and no time left: the three are not retrained, the fourth waits.
    record, names = reproduce(tmp_path, "--max_runs=4", "--budget_s=0", "--archive")
    statuses = [r["status"] for r in record["runs"]]
    assert statuses[:3] == ["finished before"] * 3
    assert record["runs"][3]["name"] == "c10_cm+ls_seed0"
    assert statuses[3].startswith("skipped (expected ")
    assert "out/summary.md" in names and "out/runs/c10_cm_seed0/locality.json" in names
