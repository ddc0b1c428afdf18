"""Throughput of a PyTorch + timm train step of the same ViT as `train_step.py`, to set the two
side by side on one machine.

The step does the work of the JAX one on a device-resident uint8 batch: normalization on the
device, timm's CutMix (batch mode) with label smoothing, timm's `VisionTransformer` forward
(192 wide, depth 9, 12 heads, MLP 384, CLS token; 2,714,788 parameters at 32 px, like ours),
soft-target cross-entropy, backward, global-norm clipping, AdamW (fused on CUDA) and a
warmup + cosine LR step, with the Modern protocol's hyperparameters. Prints one JSON line per
(model, dtype) with the keys of `train_step.py`'s rows, plus `params`, `compiled`, `fused_attn`
(timm's scaled_dot_product_attention; `TIMM_FUSED_ATTN=0` turns it off), the torch and timm
versions. `flops_per_step` (and so the MFU) is the model-FLOPs formula of `vit_locality.flops`,
the count `train_step.py` uses; `torch_counted_flops_per_step` is what
`torch.utils.flop_counter` counts over one eager forward + backward, as a side field. bfloat16 is
`torch.autocast` with float32 parameters; float32 matmuls run as TF32 on CUDA (XLA's default
on GPU, and what `shared.py` assumes) unless `--no-tf32`. Runs on CUDA when available, else on
all CPU cores. Needs PyTorch and timm, not JAX.

    python benchmarks/timm_step.py [--batch_size=128] [--dtypes=float32,bfloat16]
        [--models=cifar,tiny_imagenet] [--steps=20] [--windows=1] [--compile] [--no-tf32]
        [--peak_tflops=N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable

import shared

try:
    import timm
    import torch
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy
    from timm.models.vision_transformer import VisionTransformer
    from torch.utils.flop_counter import FlopCounterMode

    MISSING_TORCH = False
except ImportError:  # reported by main(); the tables below still import without torch
    MISSING_TORCH = True

# vit_locality (on the path through `shared`) is installed in the JAX environment only; these
# modules are pure Python.
from vit_locality.datasets import DATASETS, DatasetInfo  # noqa: E402
from vit_locality.errors import first_line  # noqa: E402

MISSING_MESSAGE = (
    "timm_step.py needs PyTorch and timm: pip install torch timm (see benchmarks/README.md)"
)


@dataclasses.dataclass(frozen=True)
class Modern:
    """The model and the Modern protocol of `configs/common.py` (restated: that module needs
    ml_collections, which the PyTorch environment lacks)."""

    width: int = 192
    depth: int = 9
    num_heads: int = 12
    mlp_dim: int = 384
    lr: float = 1e-3
    weight_decay: float = 0.05
    grad_clip_norm: float = 1.0
    label_smoothing: float = 0.1
    cutmix_alpha: float = 1.0
    mix_prob: float = 1.0

    @staticmethod
    def patch_size(image_size: int) -> int:
        """4 at 32 px, 8 at 64 px: an 8x8 token grid either way."""
        return 4 * max(1, image_size // 32)


@dataclasses.dataclass
class Bench:
    """One (model, dtype) case: the model, its optimizer and its resident batch."""

    model: torch.nn.Module  # the eager module (the FLOP count runs it)
    forward: Callable[[torch.Tensor], torch.Tensor]  # the module, or its torch.compile
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    mixup: Mixup
    images: torch.Tensor  # uint8 [B, H, W, C]
    labels: torch.Tensor  # int64 [B]
    mean: torch.Tensor  # [1, C, 1, 1]
    std: torch.Tensor
    autocast: Callable[[], torch.autocast]


def build_model(info: DatasetInfo, modern: Modern) -> VisionTransformer:
    """timm's ViT shaped like ours. `no_embed_class`: the position embedding covers the patch
    tokens only and is added before the CLS token is prepended, as in vit_locality's ViT
    (timm's default would add a 193rd, 65th-token row: 192 more parameters)."""
    return VisionTransformer(
        img_size=info.image_size,
        patch_size=modern.patch_size(info.image_size),
        in_chans=info.channels,
        num_classes=info.num_classes,
        embed_dim=modern.width,
        depth=modern.depth,
        num_heads=modern.num_heads,
        mlp_ratio=modern.mlp_dim / modern.width,
        class_token=True,
        global_pool="token",
        no_embed_class=True,
    )


def warmup_cosine(step: int) -> float:
    """LR factor of `step`: linear from 0 over WARMUP_STEPS, then cosine to 0 at TOTAL_STEPS
    (shared.py's; optax.warmup_cosine_decay_schedule, as vit_locality.train_state.make_schedule)."""
    if step < shared.WARMUP_STEPS:
        return step / shared.WARMUP_STEPS
    progress = min(1.0, (step - shared.WARMUP_STEPS) / (shared.TOTAL_STEPS - shared.WARMUP_STEPS))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, modern: Modern, fused: bool) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (not on biases, LayerNorm scales, the
    position embedding or the CLS token), as vit_locality.train_state.make_optimizer describes."""
    no_decay = model.no_weight_decay()
    decay, rest = [], []
    for name, param in model.named_parameters():
        (decay if param.ndim > 1 and name not in no_decay else rest).append(param)
    groups = [
        {"params": decay, "weight_decay": modern.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=modern.lr, betas=(0.9, 0.999), eps=1e-8, fused=fused)


def setup(
    model_name: str, dtype: str, batch_size: int, device: torch.device, compile_model: bool
) -> tuple[Bench, DatasetInfo, Modern]:
    info, modern = DATASETS[shared.MODELS[model_name]], Modern()
    model = build_model(info, modern).to(device)
    optimizer = make_optimizer(model, modern, fused=device.type == "cuda")
    generator = torch.Generator().manual_seed(0)
    shape = (batch_size, info.image_size, info.image_size, info.channels)
    bench = Bench(
        model=model,
        forward=torch.compile(model) if compile_model else model,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine),
        mixup=Mixup(
            mixup_alpha=0.0,
            cutmix_alpha=modern.cutmix_alpha,
            prob=modern.mix_prob,
            label_smoothing=modern.label_smoothing,
            mode="batch",
            num_classes=info.num_classes,
        ),
        images=torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator).to(device),
        labels=torch.randint(0, info.num_classes, (batch_size,), generator=generator).to(device),
        mean=torch.tensor(info.mean, device=device).view(1, -1, 1, 1),
        std=torch.tensor(info.std, device=device).view(1, -1, 1, 1),
        autocast=lambda: torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16"
        ),
    )
    return bench, info, modern


def forward_backward(bench: Bench, forward: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Normalize (uint8 NHWC -> float NCHW), CutMix + label smoothing, forward, loss, backward."""
    images = bench.images.permute(0, 3, 1, 2).float()
    images = (images / 255.0 - bench.mean) / bench.std
    images, targets = bench.mixup(images, bench.labels)
    with bench.autocast():
        logits = forward(images)
    SoftTargetCrossEntropy()(logits.float(), targets).backward()


def train_step(bench: Bench, grad_clip_norm: float) -> None:
    forward_backward(bench, bench.forward)
    torch.nn.utils.clip_grad_norm_(bench.model.parameters(), grad_clip_norm)
    bench.optimizer.step()
    bench.scheduler.step()
    bench.optimizer.zero_grad(set_to_none=True)


def count_flops(bench: Bench) -> int:
    """FLOPs of one eager forward + backward as torch's FlopCounterMode counts them."""
    with FlopCounterMode(display=False) as counter:
        forward_backward(bench, bench.model)
    bench.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_kind(device: torch.device) -> str:
    """Like JAX's device_kind: the GPU's name ("NVIDIA H100 80GB HBM3"), or "cpu"."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_line(error, limit=400)}"


def benchmark(
    model_name: str, dtype: str, args: argparse.Namespace, device: torch.device
) -> dict | None:
    """Times `args.steps` steps after 2 warm-up steps; prints and returns the JSON row, or
    prints a one-line error to stderr and returns None when torch.compile fails."""
    bench, info, modern = setup(model_name, dtype, args.batch_size, device, args.compile)
    flops = shared.model_flops(info, modern.patch_size(info.image_size), modern.width,
                               modern.depth, modern.mlp_dim, args.batch_size)  # fmt: skip
    torch_flops = count_flops(bench)
    start = time.perf_counter()
    try:
        for _ in range(2):  # warm up (and compile)
            train_step(bench, modern.grad_clip_norm)
        synchronize(device)
    except Exception as error:  # compilation errors surface here, on the first call
        if not args.compile:
            raise
        print(
            f"timm_step.py: torch.compile failed ({model_name}, {dtype}): {one_line(error)}",
            file=sys.stderr,
            flush=True,
        )
        return None
    warmup_seconds = time.perf_counter() - start
    faults, window_seconds = shared.minor_page_faults(), []
    for _ in range(args.windows):  # the step time is the median window's
        start = time.perf_counter()
        for _ in range(args.steps):
            train_step(bench, modern.grad_clip_norm)
        synchronize(device)
        window_seconds.append((time.perf_counter() - start) / args.steps)
    seconds = sorted(window_seconds)[len(window_seconds) // 2]
    faults_per_step = round((shared.minor_page_faults() - faults) / (args.steps * args.windows))
    kind = device_kind(device)
    peak = args.peak_tflops or shared.peak_for(kind, dtype, 1)
    tflops = flops / seconds / 1e12
    row = {
        "name": f"timm_step/{model_name}",
        "img_per_s": round(args.batch_size / seconds, 1),
        "step_ms": round(1000 * seconds, 2),
        "image_size": info.image_size,
        "patch_size": modern.patch_size(info.image_size),
        "dtype": dtype,
        "batch_size": args.batch_size,
        "devices": 1,
        "device_kind": kind,
        "flops_per_step": flops,
        "torch_counted_flops_per_step": torch_flops,
        "tflops_per_s": round(tflops, 3),
        "mfu": round(tflops / peak, 4) if peak else None,
        "malloc": shared.malloc_library(),
        "page_faults_per_step": faults_per_step,
        "params": sum(p.numel() for p in bench.model.parameters()),
        "compiled": args.compile,
        "fused_attn": bool(bench.model.blocks[0].attn.fused_attn),  # TIMM_FUSED_ATTN=0: off
        "warmup_s": round(warmup_seconds, 1),
        "float32_matmul": "tf32" if device.type == "cuda" and args.tf32 else "ieee",
        "torch": torch.__version__,
        "timm": timm.__version__,
    }
    print(json.dumps(row), flush=True)
    return row


def select_device(tf32: bool) -> torch.device:
    """CUDA when available (TF32 matmuls per `tf32`), else the CPU with all its cores."""
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        return torch.device("cuda")
    torch.set_num_threads(os.cpu_count() or 1)
    return torch.device("cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=128, help="even (timm's Mixup)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--models", default="cifar,tiny_imagenet")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--windows", type=int, default=1, help="median of N timed windows")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--tf32",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="float32 matmuls as TF32 on CUDA, like XLA's default",
    )
    parser.add_argument("--peak_tflops", type=float, default=None, help="peak of the device")
    args = parser.parse_args()
    if MISSING_TORCH:
        print(MISSING_MESSAGE, file=sys.stderr)
        sys.exit(2)
    device = select_device(args.tf32)
    failed = 0
    for model_name in args.models.split(","):
        for dtype in args.dtypes.split(","):
            failed += benchmark(model_name, dtype, args, device) is None
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
