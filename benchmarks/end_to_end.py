"""Steady-state img/s of real training against the train step alone: is the run input-bound?

Real training here is the Modern protocol end to end: the tf.data input (crop, flip,
AutoAugment on the host) feeding the jitted step (CutMix, label smoothing, forward, backward,
AdamW on the device) through the device prefetch. The step alone reuses one device-resident
batch. Prints one JSON line; `input_bound` is true when real training runs below 90% of the
step alone.

    python benchmarks/end_to_end.py [--batch_size=128] [--steps=20] [--dtype=float32]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from train_step import setup  # noqa: E402

from vit_locality.data import files  # noqa: E402
from vit_locality.data.augment import make_train_augment  # noqa: E402
from vit_locality.data.train_input import train_batches  # noqa: E402
from vit_locality.parallel import sharding  # noqa: E402

SAMPLE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-sample"
WARMUP = 3


def timed(run_step, batches, steps: int) -> float:
    """Seconds per step over `steps` steps, after WARMUP untimed ones."""
    for _ in range(WARMUP):
        jax.block_until_ready(run_step(next(batches)))
    start = time.perf_counter()
    for _ in range(steps):
        out = run_step(next(batches))
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    state, train_step, info, config, mesh = setup("cifar", args.dtype)
    if (SAMPLE / "data_batch_1.bin").exists():
        images, labels = files.read_cifar10(SAMPLE, "train")
    else:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (5000, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, 5000, dtype=np.int32)
    real = sharding.prefetch_to_device(
        train_batches(
            images,
            labels,
            augment=make_train_augment(config),  # the step's config: Modern CIFAR-100
            global_batch_size=args.batch_size,
            start_step=0,
            total_steps=2 * (WARMUP + args.steps),
            seed=0,
        ),
        sharding.batch_sharded(mesh),
    )

    def run_step(batch):
        nonlocal state
        state, metrics = train_step(state, batch)
        return metrics

    end_to_end = timed(run_step, real, args.steps)
    fixed = next(real)
    step_only = timed(run_step, iter(lambda: fixed, None), args.steps)
    row = {
        "name": "end_to_end/cifar_modern",
        "img_per_s": round(args.batch_size / end_to_end, 1),
        "step_only_img_per_s": round(args.batch_size / step_only, 1),
        "input_bound": end_to_end > step_only / 0.9,
        "image_size": info.image_size,
        "patch_size": config.model.patch_size,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
