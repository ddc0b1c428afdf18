"""`scripts/reproduce.py`: the pairs' order and sizing from a throughput, and, end to end on
the real data with a tiny ViT: both runs of a pair at once, results packed after every pair (a
kill leaves the finished ones, a stop packs the rows written), resume, the time budget."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from .conftest import CIFAR10_SAMPLE, DATA_DIR, FASHION_MNIST, REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import reproduce  # noqa: E402

needs_data = pytest.mark.skipif(
    not (CIFAR10_SAMPLE / "test_batch.bin").exists() or not FASHION_MNIST.is_dir(),
    reason="real data absent",
)


def test_pairs_come_in_the_order_the_finding_needs():
    pairs = reproduce.plan_pairs("data", tiny=False)
    names = [(a.name, b.name) for a, b in pairs]
    assert names[:4] == [
        ("fmnist_baseline_seed0", "fmnist_cm_seed0"),  # 60,000 real images first
        ("c10_baseline_seed0", "c10_cm_seed0"),
        ("fmnist_ls_seed0", "fmnist_cm+ls_seed0"),
        ("c10_ls_seed0", "c10_cm+ls_seed0"),
    ]
    assert len(pairs) == 8 and names[4][0] == "fmnist_baseline_seed1"
    assert pairs[0][0].overrides["data.dir"] == "data/fashion-mnist"


@pytest.mark.parametrize(
    "seconds, seconds_per_step, expected",
    [
        (300.0, 0.01, 26_000),  # (300 - 40) / 0.01
        (1000.0, 0.01, reproduce.PAPER_STEPS),  # the paper's steps at most
        (30.0, 0.01, 0),  # less than the overhead
        (300.0, None, reproduce.PAPER_STEPS),  # no speed known yet: the deadline stops it
    ],
)
def test_a_pair_gets_the_steps_its_time_allows(seconds, seconds_per_step, expected):
    assert reproduce.pair_steps(seconds, seconds_per_step, reproduce.PAPER_STEPS) == expected


def test_the_first_pair_s_speed_is_half_the_bare_step_s_at_its_efficiency():
    """60,000 img/s at batch 128 for one process: each of two at once trains at 0.5 x 0.7 of
    it, 21,000 img/s, 6.1 ms a step of the Fashion-MNIST model."""
    (run, _), *_ = reproduce.plan_pairs("data", tiny=False)
    per_step = reproduce.first_seconds_per_flop(60_000, run) * reproduce.step_flops(run)
    assert per_step == pytest.approx(128 / 21_000)
    assert reproduce.step_flops(run) == 108_674_187_264  # 28 px, 7 x 7 patches + CLS


def test_a_sized_run_scales_its_schedule():
    (run, _), *_ = reproduce.plan_pairs("data", tiny=False)
    overrides = reproduce.sized(run, 39_000, reproduce.SIZES["full"]).overrides
    assert overrides["total_steps"] == "39000"
    assert float(overrides["warmup_epochs"]) * (60_000 // 128) == pytest.approx(3_900, abs=0.5)
    assert overrides["eval_every_steps"] == "1950"
    assert overrides["evals.locality.every_steps"] == "3900"
    assert overrides["ckpt_every_steps"] == "9750" and overrides["log_every_steps"] == "200"


def reproduce_command(tmp_path, *args):
    """One CPU device, as the GPU run has one GPU. (With 8 emulated CPU devices on 2 cores, the
    on-device input's training can deadlock in XLA:CPU's all-reduce rendezvous.)"""
    command = [sys.executable, "scripts/reproduce.py", "--tiny", f"--data={DATA_DIR}"]
    command += [f"--root={tmp_path / 'runs'}", f"--out={tmp_path / 'out'}", *args]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    return command, env


@needs_data
def test_a_killed_reproduction_leaves_its_finished_pair_and_resumes(tmp_path):
    archive = tmp_path / "out.tar.gz"
    command, env = reproduce_command(
        tmp_path, "--max_pairs=2", "--max_steps=8", f"--archive={archive}"
    )
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    lines = []
    for line in process.stdout:  # SIGKILL, to it and its runs, while the second pair trains
        lines.append(line)
        if line.startswith("[pair 2/2] c10_baseline_seed0 and c10_cm_seed0: training"):
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert lines[-1].startswith("[pair 2/2]"), "".join(lines)
    assert lines[0] == "[pair 1/2] fmnist_baseline_seed0 and fmnist_cm_seed0: training 8 steps\n"
    with tarfile.open(archive) as packed:
        record = json.load(packed.extractfile("out/reproduce.json"))
        summary = packed.extractfile("out/summary.md").read().decode().splitlines()
        names = packed.getnames()
        log = packed.extractfile("out/runs/fmnist_cm_seed0/train.log").read().decode()
    assert [(r["name"], r["status"]) for r in record["runs"]] == [
        ("fmnist_baseline_seed0", "finished"),  # trained at the same time
        ("fmnist_cm_seed0", "finished"),
    ]
    assert record["device_kind"] == "not given"  # passed in, never probed
    assert "out/runs/fmnist_cm_seed0/plots/mad_per_head.png" in names
    assert not any("checkpoints" in name for name in names)
    assert "step 8/8" in log  # the run's own progress line
    assert summary[0] == (
        "| run | steps | of | top-1 (%) | min MAD, layer 1 | at step | train img/s |"
    )
    assert [row.split(" | ")[1:3] + row.split(" | ")[5:6] for row in summary[2:4]] == [
        ["8", "8", "8"]
    ] * 2

    # Again, with no time left: the first pair is not retrained, the second does not start.
    command, env = reproduce_command(tmp_path, "--max_pairs=2", "--max_steps=8", "--budget_s=0")
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = tmp_path / "out"
    record = json.loads((out / "reproduce.json").read_text())
    statuses = [r["status"] for r in record["runs"]]
    assert statuses[:2] == ["finished before"] * 2
    assert statuses[2:] == ["not started (no time left)"] * 2
    for name in ("fmnist_baseline_seed0", "fmnist_cm_seed0"):
        config = json.loads((out / "runs" / name / "config.json").read_text())
        assert config["data"]["on_device"] and config["data"]["source"] == "files"
        assert config["total_steps"] == 8 and config["model"]["width"] == 32
        assert (out / "runs" / name / "locality.json").is_file()
    assert (out / "report" / "report.md").read_text().startswith("# Attention locality report")
    summary = (out / "summary.md").read_text().splitlines()
    table = summary[summary.index("") + 1 :]
    assert table[0].startswith("| dataset | condition | seeds | top-1 (%) | min MAD, layer 1 |")
    assert [row.split(" | ")[1] for row in table[2:4]] == ["baseline", "cm"]
    assert summary[-1].startswith("- Fashion-MNIST: the split ")


@needs_data
def test_a_pair_stopped_part_way_is_packed_with_the_rows_it_wrote(tmp_path):
    """SIGTERM (what the visit sends at its deadline) while the pair trains: both runs
    checkpoint and stop; OUT holds their metrics and says where each stopped."""
    command, env = reproduce_command(tmp_path, "--max_pairs=1", "--max_steps=5000")
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
    metrics = [tmp_path / "runs" / name / "metrics.jsonl" for name in
               ("fmnist_baseline_seed0", "fmnist_cm_seed0")]  # fmt: skip
    deadline = time.monotonic() + 300  # generous: the event is a train row in each run
    while not all(m.is_file() and '"train/loss"' in m.read_text() for m in metrics):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    out = tmp_path / "out"
    record = json.loads((out / "reproduce.json").read_text())
    for run in record["runs"]:
        step, total = map(int, run["status"].removeprefix("stopped at step ").split(" of "))
        assert 0 < step < total == 5000
        rows = [json.loads(line) for line in (out / "runs" / run["name"] / "metrics.jsonl")
                .read_text().splitlines()]  # fmt: skip
        assert max(r["step"] for r in rows if "train/loss" in r) == step
    assert "SIGTERM: packing the runs so far" in output
