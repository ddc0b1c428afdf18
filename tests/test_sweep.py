"""Sweeps: the paper's 12 runs, seeds, variants and overrides, skipping finished runs and resuming
interrupted ones (real tiny runs on the CIFAR-10 sample); the ablation config's 8 subsets."""

import itertools
import json
import shlex
import shutil
import subprocess
import sys

import pytest

from configs import cifar100_ablation, cifar100_modern
from vit_locality import sweep
from vit_locality.workdir import RunDir

from .conftest import CIFAR10_SAMPLE, REPO_ROOT
from .helpers import ON_DEVICE, ONE_DEVICE_ENV

PAPER = "configs/sweeps/paper.py"


def printed(capsys, *args):
    assert sweep.main([*args, "--print"]) == 0
    return capsys.readouterr().out.splitlines()


def test_paper_sweep_prints_its_12_runs_and_seeds_multiply_them(capsys):
    lines = printed(capsys, PAPER, "--root=runs/paper")
    assert len(lines) == 12
    assert all(line.startswith("python -m vit_locality.main --config=configs/") for line in lines)
    names = [shlex.split(line)[4].removeprefix("--workdir=runs/paper/") for line in lines]
    assert len(set(names)) == 12 and all(n.endswith("_seed0") for n in names)
    assert "cifar100_aa+cm_seed0" in names and "tiny_imagenet_modern_seed0" in names
    lines = printed(capsys, PAPER, "--root=runs/paper", "--seeds=2")
    assert len(lines) == 24
    assert lines[0].endswith("--workdir=runs/paper/cifar10_baseline_seed0 --config.seed=0")
    assert lines[1].endswith("--workdir=runs/paper/cifar10_baseline_seed1 --config.seed=1")
    lines = printed(capsys, PAPER, "--root=gs://bucket/paper", "--multihost")  # a TPU pod
    assert lines[0].endswith(
        "--workdir=gs://bucket/paper/cifar10_baseline_seed0 --config.seed=0 --multihost"
    )


def test_variant_and_global_overrides_apply_to_every_run(capsys):
    lines = printed(
        capsys, PAPER, "--root=r", "--variant=smoke", "--config.total_steps=30", "--config.lr=3e-4"
    )
    first, ablation = shlex.split(lines[0]), shlex.split(lines[-1])
    assert first[3] == "--config=configs/cifar10_baseline.py:smoke"
    assert ablation[3] == "--config=configs/cifar100_ablation.py:cutmix=1,label_smoothing=1,smoke"
    assert first[5:] == ["--config.total_steps=30", "--config.lr=3e-4", "--config.seed=0"]
    run = sweep.expand(
        [dict(name="x", config="configs/cifar10_baseline.py", overrides={"lr": 1.0, "wd": 0.0})],
        seeds=1,
        global_overrides={"lr": "0.5"},
    )[0]
    assert run.overrides == {"lr": "0.5", "wd": "0.0", "seed": "0"}  # the sweep's flags win
    config = sweep.resolve_config(run)
    assert (config.lr, config.wd, config.seed) == (0.5, 0.0, 0)


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--config.nope=1"],
            "error: run cifar10_baseline_seed0: config.nope is not a field of "
            "configs/cifar10_baseline.py; every field is documented in configs/common.py",
        ),
        (["--config.seed=1"], "error: --config.seed is set by the sweep"),
        (["--lr=1"], "error: argument '--lr=1' not understood: use --config.FIELD=VALUE"),
        (["--seeds=0"], "error: --seeds=0 is not allowed: a positive integer"),
    ],
)
def test_bad_sweep_arguments_are_one_line_errors_with_exit_2(capsys, args, message):
    try:
        code = sweep.main([PAPER, "--root=r", *args])
    except SystemExit as e:  # argparse's errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err


def test_ablation_config_has_the_components_of_all_8_subsets():
    modern = cifar100_modern.get_config().to_dict()
    for flags in itertools.product((0, 1), repeat=3):
        arg = ",".join(f"{n}={f}" for n, f in zip(cifar100_ablation.COMPONENTS, flags, strict=True))
        config = cifar100_ablation.get_config(arg)
        assert config.aug.autoaugment == bool(flags[0])
        assert (config.mix.cutmix_alpha, config.mix.prob) == ((1.0, 1.0) if flags[1] else (0, 0))
        assert config.label_smoothing == (0.1 if flags[2] else 0.0)
        assert config.mix.mixup_alpha == 0 and config.aug.color_jitter == 0
        assert config.dataset == "cifar100" and config.protocol == "ablation"
        if all(flags):  # Modern exactly, but for the label
            assert {**config.to_dict(), "protocol": "modern"} == modern
    smoke = cifar100_ablation.get_config("smoke,cutmix=1")
    assert smoke.model.width == 64 and smoke.mix.cutmix_alpha == 1.0


# -------------------------------------------------------------- real runs on the CIFAR-10 sample

TINY = [
    "--variant=smoke",
    "--config.data.source=files",
    f"--config.data.dir={CIFAR10_SAMPLE}",
    "--config.model.width=32",
    "--config.model.depth=2",
    "--config.model.num_heads=2",
    "--config.model.mlp_dim=64",
    "--config.total_steps=20",
    "--config.warmup_epochs=0.1",
    "--config.ckpt_every_steps=10",
    "--config.log_every_steps=10",
    "--config.eval_every_steps=1000",  # only the final eval and locality analysis
    "--config.analysis.num_images=16",
    *ON_DEVICE,  # run on one device (ONE_DEVICE_ENV)
]

SWEEP_FILE = """
def get_sweep():
    return [
        dict(name="bad", config="configs/cifar10_baseline.py", overrides={"lr": -1.0}),
        dict(name="done", config="configs/cifar10_baseline.py"),
        dict(name="cut", config="configs/cifar10_baseline.py"),
    ]
"""


@pytest.mark.skipif(not (CIFAR10_SAMPLE / "test_batch.bin").exists(), reason="no CIFAR-10 sample")
def test_sweep_skips_finished_runs_resumes_interrupted_ones_and_survives_a_failure(tmp_path):
    sweep_file = tmp_path / "tiny.py"
    sweep_file.write_text(SWEEP_FILE)
    root = tmp_path / "runs"
    base = [sys.executable, "-m", "vit_locality.sweep", str(sweep_file), f"--root={root}", *TINY]
    listing = subprocess.run([*base, "--print"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    commands = {
        shlex.split(line)[4].rsplit("/", 1)[1]: line for line in listing.stdout.splitlines()
    }

    # "done": finished before (an eval row at the final step 20 of its plan.json).
    done = root / "done_seed0"
    done.mkdir(parents=True)
    # Its plan.json is one written before the evaluators' periods left the plan.
    plan = dict(steps_per_epoch=79, total_steps=20, warmup_steps=8, eval_every_steps=1000)
    (done / "plan.json").write_text(json.dumps(plan | {"analysis_every_steps": 158}))
    rows = [{"step": 10, "epoch": 0.13, "train/loss": 2.2}, {"step": 20, "epoch": 0.25}]
    rows[1] |= {"train/loss": 2.1, "val/prec@1": 20.0, "val/loss": 2.0}
    (done / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # "cut": killed after its checkpoint of step 10: trained to the end by its printed command,
    # then cut back to what a kill at step 19 leaves (no checkpoint 20, rows up to 10 kept).
    cut = root / "cut_seed0"
    trained = subprocess.run(
        [sys.executable, *shlex.split(commands["cut_seed0"])[1:]],
        cwd=REPO_ROOT,
        env=ONE_DEVICE_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    shutil.rmtree(cut / "checkpoints" / "20")
    (cut / "locality.json").unlink()
    kept = [row for row in RunDir(cut).read_metrics() if row["step"] <= 10]
    (cut / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))

    result = subprocess.run(
        base, cwd=REPO_ROOT, env=ONE_DEVICE_ENV, capture_output=True, text=True, timeout=300
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr[-3000:]  # "bad" failed
    assert "error: config.lr=-1.0 is not allowed" in result.stderr  # streamed through
    assert "[2/3] done_seed0: finished before (skipped) (no locality.json" in out
    assert (done / "metrics.jsonl").read_text().count("\n") == 2  # not started: no new rows
    assert f"Resuming {cut} from step 10/20" in out
    assert [r["step"] for r in RunDir(cut).read_metrics() if "val/prec@1" in r] == [20]
    summary = out.split("Sweep summary")[1]
    assert "bad_seed0: FAILED (exit 2)" in summary
    assert (
        f"done_seed0: finished before (skipped) (no locality.json of the final step: "
        f"python -m vit_locality.analyze --workdir={done})" in summary
    )
    assert "cut_seed0: finished\n" in summary  # with its locality.json of step 20
    assert "2/3 runs finished" in summary


def test_cpu_scale_sweep_is_baseline_and_cutmix_of_the_reduced_probe(capsys):
    lines = printed(
        capsys,
        "configs/sweeps/cpu_scale.py",
        "--root=/work/runs-cpu-scale",
        "--config.data.dir=/data/cifar10-sample",
    )
    runs = [shlex.split(line) for line in lines]
    assert [args[4] for args in runs] == [
        "--workdir=/work/runs-cpu-scale/baseline_seed0",
        "--workdir=/work/runs-cpu-scale/cutmix_seed0",
    ]
    common = [
        "--config.data.source=files",
        "--config.data.dir=/data/cifar10-sample",  # the sweep's flag wins over DATA_DIR
        "--config.data.on_device=True",
        "--config.model.width=128",
        "--config.model.depth=6",
        "--config.model.num_heads=8",
        "--config.model.mlp_dim=256",
        "--config.batch_size=128",
        "--config.total_steps=8000",
        "--config.warmup_epochs=5.0",
        "--config.schedule=constant",
        "--config.eval_every_steps=1000",
        "--config.evals.locality.every_steps=250",
        "--config.analysis.num_images=512",
        "--config.ckpt_every_steps=250",
    ]
    assert runs[0][3:] == [
        "--config=configs/cifar10_baseline.py",
        runs[0][4],
        *common,
        "--config.seed=0",
    ]
    assert runs[1][3:] == [
        "--config=configs/cifar10_baseline.py",
        runs[1][4],
        *common,
        "--config.mix.cutmix_alpha=1.0",
        "--config.mix.prob=1.0",
        "--config.seed=0",
    ]
    entries, seeds = sweep.load_sweep("configs/sweeps/cpu_scale.py")
    baseline, cutmix = (sweep.resolve_config(run) for run in sweep.expand(entries, seeds))
    for config in (baseline, cutmix):  # what the runs train and measure
        assert (config.model.width, config.model.depth, config.model.num_heads) == (128, 6, 8)
        assert (config.model.mlp_dim, config.model.patch_size, config.batch_size) == (256, 4, 128)
        assert (config.total_steps, config.warmup_epochs, config.schedule) == (
            8000,
            5.0,
            "constant",
        )
        assert config.evals.locality.every_steps == 250 and config.evals.locality.num_images == 512
        assert config.evals.classification.every_steps == 1000
        assert config.data.dir == "data/cifar10-sample" and config.data.on_device
        assert (config.label_smoothing, config.aug.autoaugment) == (0.0, False)
    assert (baseline.mix.prob, baseline.mix.cutmix_alpha) == (0.0, 0.0)
    assert (cutmix.mix.prob, cutmix.mix.cutmix_alpha, cutmix.mix.mixup_alpha) == (1.0, 1.0, 0.0)
