"""What the JAX benchmark (`train_step.py`) and its PyTorch twin (`timm_step.py`) share: the
models, the LR schedule's length, the model FLOPs of a step (`vit_locality.flops`, one formula
for both) and the dense peak TFLOP/s per accelerator chip for the model FLOPs utilization (MFU).
Imports neither JAX nor PyTorch."""

from __future__ import annotations

import pathlib
import resource
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # a plain copy: `python benchmarks/X.py` puts only benchmarks/ there
    sys.path.insert(0, str(REPO))
from vit_locality.datasets import DatasetInfo  # noqa: E402  (pure Python, as is flops)
from vit_locality.flops import VitShape, train_step_flops  # noqa: E402

MODELS = {  # benchmark model name -> dataset of its Modern config (8x8 tokens, 7x7 at 28 px)
    "cifar": "cifar100",
    "tiny_imagenet": "tiny_imagenet",
    "fashion_mnist": "fashion_mnist",  # train_step.py only (the step beside end-to-end runs)
}
WARMUP_STEPS, TOTAL_STEPS = 10, 1000  # the LR schedule both steps run (its values don't matter)

# Dense peak TFLOP/s per chip by device kind and dtype. H100/H200: the bf16 matmul rate measured
# on the lent H200 (about 790; the datasheet's 989 is not reached), TF32 half of it (float32
# matmuls run as TF32 on NVIDIA tensor cores under XLA's default precision). The others: vendor
# datasheets.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100": {"bfloat16": 790.0, "float32": 395.0},
    "H200": {"bfloat16": 790.0, "float32": 395.0},
    "A100": {"bfloat16": 312.0, "float32": 156.0},
    "TPU v4": {"bfloat16": 275.0, "float32": 275.0},
    "TPU v5 lite": {"bfloat16": 197.0, "float32": 197.0},
    "TPU v5p": {"bfloat16": 459.0, "float32": 459.0},
}


def peak_for(device_kind: str, dtype: str, count: int) -> float | None:
    """Peak TFLOP/s of `count` devices of `device_kind` in `dtype`, or None when unknown.

    `device_kind` is JAX's `device.device_kind` or `torch.cuda.get_device_name()` (both read
    like "NVIDIA H100 80GB HBM3"); it matches the first table entry it contains."""
    for name, peaks in PEAK_TFLOPS.items():
        if name in device_kind:
            peak = peaks.get(dtype)
            return peak * count if peak is not None else None
    return None


def model_flops(
    info: DatasetInfo, patch_size: int, width: int, depth: int, mlp_dim: int, batch_size: int
) -> int:
    """Model FLOPs of one train step of the CLS-token ViT on `info`'s images (the formula)."""
    shape = VitShape(info.image_size, info.channels, patch_size, width, depth, mlp_dim,
                     info.num_classes)  # fmt: skip
    return train_step_flops(shape, batch_size)


def malloc_library() -> str:
    """ "tcmalloc" or "jemalloc" when preloaded into this process (LD_PRELOAD), else "glibc"."""
    maps = pathlib.Path("/proc/self/maps")
    loaded = maps.read_text() if maps.exists() else ""
    return next((name for name in ("tcmalloc", "jemalloc") if name in loaded), "glibc")


def minor_page_faults() -> int:
    """Minor page faults of this process so far: each is the kernel handing over (and zeroing)
    a fresh 4 KiB page, which is what glibc's malloc costs XLA:CPU at every step."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
