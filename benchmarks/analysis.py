"""Throughput and memory of the jitted locality pass (forward + on-device reduction per layer).

Prints one JSON line per case: img/s over device-resident batches (and `forward_img_per_s`, the
plain eval forward of the same batch, for the cost of the analysis), and the memory of the compiled
pass from XLA's memory analysis (`temp_bytes`: scratch buffers; `peak_bytes`: arguments + outputs +
temporaries, a static estimate from buffer assignment) beside `forward_temp_bytes` (the plain
forward's scratch), `layer_attention_bytes` (the float32 attention maps of one layer for the batch)
and `all_layers_attention_bytes`. On accelerators that report it, `device_peak_bytes` is the
allocator's measured peak. Parameters are random (speed and
memory do not depend on their values). No TensorFlow needed.

    python benchmarks/analysis.py [--batch_size=128] [--cases=32px_patch4,64px_patch4]
        [--dtype=float32] [--batches=3] [--rollout=mean]

`--cases=224px_vitb16` (not run by default) is ViT-B/16 at 224 px as timm builds it (width 768,
12 layers of 12 heads, MLP 3072, class token with a position, exact GELU, 1000 classes; 197
tokens), the model of `analyze --checkpoint` on a timm `vit_base_patch16_224`; with
`--batch_size=125 --batches=8` the timed batches are 1,000 images. `--rollout` adds attention
rollout to the pass, as `analyze --checkpoint` runs it.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from vit_locality.analysis.attention_pass import make_locality_pass
from vit_locality.datasets import DATASETS
from vit_locality.models import DTYPES, ViT
from vit_locality.parallel import sharding
from vit_locality.predict import Predictor

CASES = {  # name -> (dataset whose mean/std are used, image size, patch size, model fields)
    "32px_patch4": ("cifar100", 32, 4, {}),  # the default model: 8x8 patches + CLS = 65 tokens
    "64px_patch4": ("tiny_imagenet", 64, 4, {}),  # 16x16 patches + CLS = 257 tokens
}
VIT_B16 = dict(
    num_classes=1000, width=768, depth=12, num_heads=12, mlp_dim=3072, pos_embed_prefix=True,
    gelu_approximate=False,
)  # fmt: skip
EXTRA_CASES = {"224px_vitb16": ("tiny_imagenet", 224, 16, VIT_B16)}  # 14x14 patches + CLS


def time_per_call(compiled, args: tuple, calls: int) -> float:
    """Seconds per call of `compiled(*args)` after one warm-up call."""
    jax.block_until_ready(compiled(*args))
    start = time.perf_counter()
    for _ in range(calls):
        out = compiled(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls


def benchmark(
    case: str, dtype: str, batch_size: int, batches: int, rollout: str | None = None
) -> dict:
    dataset, image_size, patch, fields = {**CASES, **EXTRA_CASES}[case]
    info = DATASETS[dataset]
    mesh = sharding.make_mesh()
    fields = {"num_classes": info.num_classes, **fields}
    model = ViT(patch_size=patch, dtype=DTYPES[dtype], **fields)
    predictor = Predictor.for_dataset(model, dataset)
    shape = (image_size, image_size, info.channels)
    params = jax.jit(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape)))["params"],
        out_shardings=sharding.replicated(mesh),
    )()
    rng = np.random.default_rng(0)
    batch = sharding.to_global(
        {
            "image": rng.integers(0, 256, (batch_size, *shape), dtype=np.uint8),
            "mask": np.ones(batch_size, bool),
        },
        sharding.batch_sharded(mesh),
    )
    start = time.perf_counter()
    lowered = make_locality_pass(predictor, rollout).lower(params, batch["image"], batch["mask"])
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    memory = compiled.memory_analysis()
    seconds = time_per_call(compiled, (params, batch["image"], batch["mask"]), batches)
    # The plain eval forward (logits only) of the same batch: what the analysis adds to it.
    forward = jax.jit(lambda p, x: predictor(p, x)[0]).lower(params, batch["image"]).compile()
    forward_seconds = time_per_call(forward, (params, batch["image"]), batches)
    tokens = model.num_prefix_tokens + (image_size // patch) ** 2
    layer_bytes = batch_size * model.num_heads * tokens * tokens * 4
    stats = jax.devices()[0].memory_stats() or {}
    row = {
        "name": f"analysis/{case}" + (f"+rollout_{rollout}" if rollout else ""),
        "img_per_s": round(batch_size / seconds, 1),
        "batch_ms": round(1000 * seconds, 1),
        "forward_img_per_s": round(batch_size / forward_seconds, 1),
        "image_size": image_size,
        "patch_size": patch,
        "tokens": tokens,
        "dtype": dtype,
        "batch_size": batch_size,
        "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
        "compile_s": round(compile_s, 1),
        "temp_bytes": memory.temp_size_in_bytes,
        "forward_temp_bytes": forward.memory_analysis().temp_size_in_bytes,
        "peak_bytes": memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        + memory.temp_size_in_bytes
        - memory.alias_size_in_bytes,
        "layer_attention_bytes": layer_bytes,
        "all_layers_attention_bytes": model.depth * layer_bytes,
        "device_peak_bytes": stats.get("peak_bytes_in_use"),
        "memory_source": "XLA memory_analysis of the compiled pass"
        + (" (CPU: static buffer assignment)" if jax.default_backend() == "cpu" else ""),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=128, help="global, over all devices")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--dtype", default="float32", choices=tuple(DTYPES))
    parser.add_argument("--batches", type=int, default=3, help="timed batches after a warm-up")
    parser.add_argument("--rollout", choices=("mean", "max", "min"), default=None)
    args = parser.parse_args()
    for case in args.cases.split(","):
        benchmark(case, args.dtype, args.batch_size, args.batches, args.rollout)


if __name__ == "__main__":
    main()
