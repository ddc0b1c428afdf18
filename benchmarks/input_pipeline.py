"""Throughput of the train input, Baseline and Modern, on CIFAR-size images: tf.data on the host
and the same augmentation on the device (`data.on_device=True`).

Runs the real `train_batches` pipeline (step-indexed order, per-example stateless augmentation,
batching) and the real `device_train_batches` (the jitted gather + augmentation on one device)
on the real CIFAR-10 sample when `../shared/data/cifar10-sample` exists, else on random images,
and prints one JSON line per (input, protocol): img/s, img/s per core, the cores it ran on, and
for the device input the milliseconds per batch.

    python benchmarks/input_pipeline.py [--batch_size=128] [--batches=200] [--cores=N]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

PROTOCOLS = {  # row name -> the components switched on over Baseline (their registry names)
    "baseline": (),
    "modern_autoaugment": ("autoaugment",),
    "modern_color_jitter": ("color_jitter",),
}


def protocol_config(names: tuple[str, ...]):
    """CIFAR-10's Baseline config with the components `names` switched on."""
    from configs import common
    from vit_locality.augment import registry

    config = common.get_config("cifar10")
    for name in names:
        registry.set_fields(config, registry.by_name(name).switch)
    return config


SAMPLE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-sample"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=200, help="timed batches per protocol")
    parser.add_argument("--cores", type=int, default=None, help="pin to this many cores")
    args = parser.parse_args()
    if args.cores:  # before TensorFlow sizes its thread pools
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    cores = len(os.sched_getaffinity(0))

    import numpy as np

    from vit_locality.data import files
    from vit_locality.data.augment import make_train_augment
    from vit_locality.data.train_input import train_batches

    if (SAMPLE / "data_batch_1.bin").exists():
        images, labels = files.read_cifar10(SAMPLE, "train")
        source = "cifar10-sample"
    else:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (5000, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, 5000, dtype=np.int32)
        source = "random"

    for name, components in PROTOCOLS.items():
        batches = train_batches(
            images,
            labels,
            augment=make_train_augment(protocol_config(components)),
            global_batch_size=args.batch_size,
            start_step=0,
            total_steps=args.batches + 10,
            seed=0,
        )
        for _ in range(10):  # build the graph, fill the prefetch buffer
            next(batches)
        start = time.perf_counter()
        for _ in range(args.batches):
            next(batches)
        img_per_s = args.batches * args.batch_size / (time.perf_counter() - start)
        row = {
            "name": f"input_pipeline/{name}",
            "img_per_s": round(img_per_s, 1),
            "img_per_s_per_core": round(img_per_s / cores, 1),
            "cores": cores,
            "image_size": 32,
            "batch_size": args.batch_size,
            "data": source,
        }
        print(json.dumps(row), flush=True)

    import jax

    from vit_locality.augment import registry
    from vit_locality.data.device_input import device_train_batches
    from vit_locality.parallel import sharding

    mesh = sharding.make_mesh(1)
    for name, components in PROTOCOLS.items():
        ops = registry.device_image_ops(protocol_config(components))
        batches = device_train_batches(
            images,
            labels,
            mesh=mesh,
            global_batch_size=args.batch_size,
            start_step=0,
            total_steps=args.batches + 3,
            seed=0,
            ops=ops,
        )
        for _ in range(3):  # compile
            jax.block_until_ready(next(batches))
        start = time.perf_counter()
        for batch in batches:
            jax.block_until_ready(batch)
        seconds = time.perf_counter() - start
        row = {
            "name": f"input_pipeline/device/{name}",
            "img_per_s": round(args.batches * args.batch_size / seconds, 1),
            "img_per_s_per_core": round(args.batches * args.batch_size / seconds / cores, 1),
            "ms_per_batch": round(1000 * seconds / args.batches, 2),
            "cores": cores,
            "device_kind": jax.devices()[0].device_kind,
            "image_size": 32,
            "batch_size": args.batch_size,
            "data": source,
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
