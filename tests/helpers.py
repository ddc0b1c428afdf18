"""Shared helpers of the test modules (plain functions and constants; the fixtures are in
conftest.py): the TINY training run as a real process (`python -m vit_locality.main`) and
in-process (`tiny_config`), waiting for its events, reading what it left, and hand-made run
directories for the report; other libraries' checkpoints in tests/fixtures/checkpoints/, their
expected outputs and the tolerance they are compared with."""

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from functools import partial

import jax
import numpy as np
import orbax.checkpoint as ocp

from vit_locality.predict import Predictor
from vit_locality.workdir import RunDir

from .conftest import CIFAR10_SAMPLE, REPO_ROOT

TOTAL_STEPS = 60
# Modern minus AutoAugment: CutMix and label smoothing on the device, on a tiny ViT.
TINY = [
    "--config=configs/cifar10_modern.py:smoke",
    "--config.data.source=files",
    f"--config.data.dir={CIFAR10_SAMPLE}",
    "--config.aug.autoaugment=False",
    "--config.model.width=32",
    "--config.model.depth=2",
    "--config.model.num_heads=2",
    "--config.model.mlp_dim=64",
    f"--config.total_steps={TOTAL_STEPS}",
    "--config.warmup_epochs=0.1",
    "--config.ckpt_every_steps=20",
    "--config.log_every_steps=10",
    "--config.eval_every_steps=30",
]


# TINY with the input on the device, for tests of what the loop does whatever feeds it (stops,
# locks, divergence): no TensorFlow to import, no tf.data threads, and one emulated device, as
# runs with the input on the device take here (docs/architecture.md, Tests).
ON_DEVICE = ("--config.data.on_device=True",)
ONE_DEVICE_ENV = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}


def command(workdir, *extra):
    return [sys.executable, "-m", "vit_locality.main", *TINY, f"--workdir={workdir}", *extra]


def _env(extra) -> dict[str, str] | None:
    """One device for a run with the input on the device; else this process's 8."""
    return ONE_DEVICE_ENV if ON_DEVICE[0] in extra else None


def run(workdir, *extra, timeout=300):
    return subprocess.run(
        command(workdir, *extra),
        cwd=REPO_ROOT,
        env=_env(extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(workdir, *extra):
    return subprocess.Popen(
        command(workdir, *extra),
        cwd=REPO_ROOT,
        env=_env(extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def tiny_config(total_steps: int, **overrides):
    """The TINY model, in-process."""
    from configs import common

    config = common.experiment("cifar10", "modern", "smoke")
    config.data.source = "files"
    config.data.dir = str(CIFAR10_SAMPLE)
    config.aug.autoaugment = False
    config.model.update(width=32, depth=2, num_heads=2, mlp_dim=64)
    config.update(
        total_steps=total_steps,
        warmup_epochs=0.0,
        log_every_steps=2,
        ckpt_every_steps=total_steps,
        eval_every_steps=total_steps,
    )
    config.analysis.num_images = 16
    if isinstance(overrides.get("evals"), str):  # as a config file from before evals were dicts
        del config.evals
    config.update(overrides)
    return config


def wait_for_checkpoint(workdir, step, process, timeout=240):
    """Waits until orbax has committed `step` (the final directory appears only on commit)."""
    target = workdir / "checkpoints" / str(step)
    deadline = time.time() + timeout
    while not target.is_dir():
        assert process.poll() is None, process.stdout.read()
        assert time.time() < deadline, f"no checkpoint {step} after {timeout}s"
        time.sleep(0.05)


def wait_for_row(workdir, key, step, process, timeout=240):
    """Waits until metrics.jsonl holds a row with `key` at `step`."""
    deadline = time.time() + timeout
    while not any(r["step"] == step and key in r for r in RunDir(workdir).read_metrics()):
        assert process.poll() is None, process.stdout.read()
        assert time.time() < deadline, f"no {key} row at step {step} after {timeout}s"
        time.sleep(0.01)


def without_speed(rows):
    """metrics.jsonl rows without their timing field."""
    return [{k: v for k, v in row.items() if k != "train/img_per_s"} for row in rows]


def tensorboard_points(workdir, skip=("train/img_per_s",)) -> list[tuple[int, str, float]]:
    """Every (step, tag, value) of the run's TensorBoard event files, in order, as written
    (tensorboard's legacy loader: each record's CRC checked, `simple_value` not migrated to a
    tensor, which would leave it 0)."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    return [
        (event.step, value.tag, value.simple_value)
        for path in sorted((workdir / "tensorboard").glob("events.out.tfevents.*"))
        for event in LegacyEventFileLoader(str(path)).Load()
        for value in event.summary.value
        if value.tag not in skip
    ]


def saved_step(output: str) -> int:
    """The step of the "SIGTERM: saved step N; ..." line in a run's output."""
    return int(output.split("SIGTERM: saved step ")[1].split(";")[0])


def final_params(workdir, step=TOTAL_STEPS):
    restored = ocp.PyTreeCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")
    return restored["params"]


def snapshot(directory):
    """Every path under `directory` with its size and modification time."""
    return {
        p.relative_to(directory): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in directory.rglob("*")
    }


def last_line(result):
    assert result.returncode == 2, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


def make_run(root, name, config, top1, mad=None, seed=0):
    """A finished 20-step run; `mad` [L][H] (None: no locality.json); entropy = 2 * mad."""
    from vit_locality.analysis.locality import summarize

    config.seed = seed
    config.total_steps = 20
    workdir = root / name
    workdir.mkdir(parents=True)
    (workdir / "config.json").write_text(config.to_json(indent=2))
    rows = [{"step": s, "epoch": s / 10, "train/loss": 4.0 - s / 10} for s in (10, 20)]
    rows += [{"step": 20, "epoch": 2.0, "val/prec@1": top1, "val/loss": 3.0}]
    if mad is not None:
        first = np.min(mad[0])
        rows += [
            {"step": s, "epoch": s / 10, "locality/min_mad_first_layer": first * s / 20}
            for s in (10, 20)
        ]
        per_head = {"mad": mad, "entropy": (2 * np.asarray(mad)).tolist()}
        record = {
            "step": 20,
            "dataset": config.dataset,
            "num_images": 1000,
            "image_size": 32,
            "patch_size": 4,
            "grid": [8, 8],
            "num_prefix_tokens": 1,
            "definitions": {"mad": "...", "entropy": "..."},
            "per_head": per_head,
            "summary": summarize(per_head),
        }
        (workdir / "locality.json").write_text(json.dumps(record))
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return workdir


def write_curve(workdir, points, top1=None):
    """Adds `locality/min_mad_first_layer` rows at `points` (step -> value) and eval rows at
    `top1` (step -> %) to the run's metrics.jsonl."""
    rows = [{"step": s, "epoch": s / 39, "locality/min_mad_first_layer": v} for s, v in points]
    rows += [{"step": s, "epoch": s / 39, "val/prec@1": v} for s, v in (top1 or {}).items()]
    with (workdir / "metrics.jsonl").open("a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


# ------------------------------------------------------------------- other libraries' checkpoints

# made by scripts/make_checkpoint_fixtures.py; each folder's expected.npz: the library's outputs
CHECKPOINT_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "checkpoints"


def expected_outputs(name):
    """The expected.npz of fixture `name` (a folder, or a file in one) as a dict."""
    folder = CHECKPOINT_FIXTURES / name
    return dict(np.load((folder if folder.is_dir() else folder.parent) / "expected.npz"))


def assert_close(got, want, what):
    """float32 on both sides with different reduction orders (XLA vs PyTorch matmuls, the
    LayerNorm's mean and variance, softmax): after 2 blocks of width 16 the differences are
    a few float32 ulps of the largest value, so rtol 1e-5 plus an atol of 1e-5 times that
    value (attention probabilities: 1e-5, as they are at most 1)."""
    want = np.asarray(want)
    atol = 1e-5 * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=atol, err_msg=what)


def checkpoint_outputs(loaded, images):
    """(logits, out) of a loaded checkpoint (`external.Loaded`) on uint8 images, attention
    included, normalised with the checkpoint's mean and std."""
    predictor = Predictor(loaded.model, loaded.preprocessing.mean, loaded.preprocessing.std)
    forward = jax.jit(partial(predictor, return_attention=True))
    return forward(loaded.params, images)


@contextlib.contextmanager
def logged_compiles():
    """Collects jax_log_compiles' messages ("Finished XLA compilation of jit(f) in ...",
    "Persistent compilation cache hit for 'jit_f' ...")."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("jax").addHandler(handler)
    jax.config.update("jax_log_compiles", True)
    try:
        yield messages
    finally:
        jax.config.update("jax_log_compiles", False)
        logging.getLogger("jax").removeHandler(handler)
