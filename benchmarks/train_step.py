"""Throughput of the jitted, sharded train step on device-resident synthetic batches.

Prints one JSON line per (model, dtype): img/s, step time, model FLOPs per step (the formula of
`vit_locality.flops`, the count `timm_step.py` uses too; XLA's own count beside it as
`xla_flops_per_step`), the achieved TFLOP/s and, when the device's peak is known (or given with
`--peak_tflops`), the model FLOPs utilization. The step is the real one (normalization, CutMix,
label smoothing, forward, backward, AdamW), on the Modern protocol. No TensorFlow needed.

    python benchmarks/train_step.py [--batch_size=128] [--dtypes=float32,bfloat16]
        [--models=cifar,tiny_imagenet] [--steps=20] [--windows=1] [--peak_tflops=N]

With `--windows=N` the step time is the median of N timed windows of `--steps` steps each.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np
import shared

from configs import common
from vit_locality import step, train_state
from vit_locality.datasets import DATASETS
from vit_locality.models import build_model
from vit_locality.parallel import sharding
from vit_locality.predict import Predictor


def peak_tflops(dtype: str, override: float | None) -> float | None:
    """Peak TFLOP/s of all devices: `override`, else the device table's value, else None."""
    return override or shared.peak_for(jax.devices()[0].device_kind, dtype, jax.device_count())


def xla_flops_of(compiled) -> float | None:
    """FLOPs of one step over all devices as XLA's cost analysis counts them (a partitioned
    program per device). A side field: on GPUs it scores cuBLAS/cuDNN calls as -1."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older JAX returns one dict per computation
        analysis = analysis[0] if analysis else {}
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"]) * jax.device_count()


def setup(model_name: str, dtype: str):
    """The Modern-protocol config's train state and jitted step of `model_name` (the same
    construction as the train loop), sharded over all devices.

    Returns (state, train_step, info, config, mesh)."""
    config = common.experiment(shared.MODELS[model_name], "modern", None)
    config.model.dtype = dtype
    info = DATASETS[config.dataset]
    mesh = sharding.make_mesh()
    model = build_model(config)
    schedule = train_state.make_schedule(config.lr, shared.WARMUP_STEPS, shared.TOTAL_STEPS)
    tx = train_state.make_optimizer(schedule, config.wd, config.grad_clip_norm)
    state = train_state.init_state(config, model, tx, mesh)
    predictor = Predictor.for_dataset(model, config.dataset)
    train_step = step.jit_train_step(config, predictor, schedule, mesh)
    return state, train_step, info, config, mesh


def benchmark(
    model_name: str, dtype: str, batch_size: int, steps: int, peak: float | None, windows: int = 1
):
    state, train_step, info, config, mesh = setup(model_name, dtype)
    shape = (info.image_size, info.image_size, info.channels)
    rng = np.random.default_rng(0)
    batch = sharding.to_global(
        {
            "image": rng.integers(0, 256, (batch_size, *shape), dtype=np.uint8),
            "label": rng.integers(0, info.num_classes, (batch_size,), dtype=np.int32),
        },
        sharding.batch_sharded(mesh),
    )
    compiled = train_step.lower(state, batch).compile()
    model = config.model
    flops = shared.model_flops(
        info, model.patch_size, model.width, model.depth, model.mlp_dim, batch_size
    )
    for _ in range(2):  # warm up
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    faults, window_seconds = shared.minor_page_faults(), []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = compiled(state, batch)
        jax.block_until_ready((state, metrics))
        window_seconds.append((time.perf_counter() - start) / steps)
    seconds = float(np.median(window_seconds))
    faults_per_step = round((shared.minor_page_faults() - faults) / (steps * windows))
    row = {
        "name": f"train_step/{model_name}",
        "img_per_s": round(batch_size / seconds, 1),
        "step_ms": round(1000 * seconds, 2),
        "image_size": info.image_size,
        "patch_size": model.patch_size,
        "dtype": dtype,
        "batch_size": batch_size,
        "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
        "flops_per_step": flops,
        "xla_flops_per_step": xla_flops_of(compiled),
        "tflops_per_s": round(flops / seconds / 1e12, 3),
        "mfu": round(flops / seconds / 1e12 / peak, 4) if peak else None,
        "malloc": shared.malloc_library(),
        "page_faults_per_step": faults_per_step,
        "windows": windows,
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--models", default="cifar,tiny_imagenet")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--windows", type=int, default=1, help="median of N timed windows")
    parser.add_argument("--peak_tflops", type=float, default=None, help="peak of all devices")
    args = parser.parse_args()
    for model_name in args.models.split(","):
        for dtype in args.dtypes.split(","):
            peak = peak_tflops(dtype, args.peak_tflops)
            benchmark(model_name, dtype, args.batch_size, args.steps, peak, args.windows)


if __name__ == "__main__":
    main()
