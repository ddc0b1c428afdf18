"""The benchmarks: the JAX step's JSON row, and the PyTorch twin kept to the same model and
protocol (checked here without PyTorch: `timm_step.py` imports without it)."""

import importlib
import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from configs import common
from vit_locality import train_state

from .conftest import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"


@pytest.fixture(scope="module")
def benchmark_modules():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("shared"), importlib.import_module("timm_step")
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.parametrize("model_name", ["cifar", "tiny_imagenet"])
def test_timm_twin_runs_our_model_and_modern_protocol(benchmark_modules, model_name):
    shared, timm_step = benchmark_modules
    config = common.experiment(shared.MODELS[model_name], "modern", None)
    modern = timm_step.Modern()
    assert (modern.width, modern.depth, modern.num_heads, modern.mlp_dim) == (
        config.model.width,
        config.model.depth,
        config.model.num_heads,
        config.model.mlp_dim,
    )
    assert modern.patch_size(32 if model_name == "cifar" else 64) == config.model.patch_size
    assert (modern.lr, modern.weight_decay, modern.grad_clip_norm) == (
        config.lr,
        config.wd,
        config.grad_clip_norm,
    )
    assert (modern.label_smoothing, modern.cutmix_alpha, modern.mix_prob) == (
        config.label_smoothing,
        config.mix.cutmix_alpha,
        config.mix.prob,
    )


def test_timm_twin_schedule_is_ours(benchmark_modules):
    shared, timm_step = benchmark_modules
    ours = train_state.make_schedule(1.0, shared.WARMUP_STEPS, shared.TOTAL_STEPS)
    for i in (0, 5, 10, 11, 500, 999, 1000):
        assert math.isclose(timm_step.warmup_cosine(i), float(ours(i)), abs_tol=1e-6), i


def test_peak_lookup(benchmark_modules):
    shared, _ = benchmark_modules
    assert shared.peak_for("NVIDIA H100 80GB HBM3", "bfloat16", 8) == 790.0 * 8
    assert shared.peak_for("NVIDIA H200", "float32", 1) == 395.0
    assert shared.peak_for("TPU v4", "float32", 4) == 275.0 * 4
    assert shared.peak_for("cpu", "float32", 1) is None


def test_timm_twin_without_torch_says_what_to_install():
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("PyTorch is installed here")
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "timm_step.py")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "timm_step.py needs PyTorch and timm: pip install torch timm (see benchmarks/README.md)"
    )


def test_model_flops_formula_is_xla_s_count_less_the_elementwise_work(benchmark_modules):
    """The default CIFAR ViT's train step at batch 128: the formula (matmuls only) against XLA's
    count of the same step on the CPU, which adds softmax, LayerNorm, GELU and AdamW: a few
    percent more at this width (146.4 G against 144.2 G when this was written)."""
    shared, _ = benchmark_modules
    sys.path.insert(0, str(BENCHMARKS))
    try:
        train_step = importlib.import_module("train_step")
    finally:
        sys.path.remove(str(BENCHMARKS))
    from vit_locality.parallel import sharding

    state, step_fn, info, config, mesh = train_step.setup("cifar", "float32")
    batch = {
        "image": jax.ShapeDtypeStruct((128, 32, 32, 3), jnp.uint8),
        "label": jax.ShapeDtypeStruct((128,), jnp.int32),
    }
    batch = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding.batch_sharded(mesh)),
        batch,
    )
    xla = step_fn.lower(state, batch).cost_analysis()["flops"]  # the unpartitioned program
    model = config.model
    formula = shared.model_flops(info, model.patch_size, model.width, model.depth,
                                 model.mlp_dim, 128)  # fmt: skip
    assert formula == 144_179_822_592
    assert 0 < (xla - formula) / formula < 0.03


def test_train_step_row(tmp_path):
    """Run from any directory: one JSON line with the model FLOPs of the formula (XLA's count
    beside it) and the MFU against the given peak."""
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "train_step.py"),
            "--models=cifar",
            "--dtypes=float32",
            "--steps=1",
            "--batch_size=8",
            "--peak_tflops=1.0",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert row["name"] == "train_step/cifar" and row["batch_size"] == 8 and row["devices"] == 1
    assert row["flops_per_step"] == 144_179_822_592 // 16  # batch 8 of the 128 above
    assert 0 < row["xla_flops_per_step"] / row["flops_per_step"] - 1 < 0.03
    assert row["mfu"] == pytest.approx(row["tflops_per_s"] / 1.0, abs=1e-3)
    assert row["img_per_s"] > 0 and math.isfinite(row["step_ms"])
    assert row["malloc"] in ("glibc", "tcmalloc", "jemalloc") and row["page_faults_per_step"] >= 0


def test_malloc_library_names_a_preloaded_tcmalloc():
    libs = sorted(pathlib.Path("/usr/lib").glob("*/libtcmalloc_minimal.so.4"))
    if not libs:
        pytest.skip("tcmalloc is not installed (Debian: libtcmalloc-minimal4)")
    probe = [sys.executable, "-c", "import shared; print(shared.malloc_library())"]
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    for preload, expected in ((None, "glibc"), (str(libs[0]), "tcmalloc")):
        run_env = env if preload is None else dict(env, LD_PRELOAD=preload)
        result = subprocess.run(
            probe, cwd=BENCHMARKS, env=run_env, capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == expected
