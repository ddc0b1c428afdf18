"""Model FLOPs of a ViT train step, counted by formula (imports neither JAX nor PyTorch).

The count behind every MFU this project reports, for our step and timm's alike: the matmuls of
the forward pass at 2 FLOPs per multiply-add (patch embedding, q/k/v, q @ k^T, attention @ v,
output projection, the MLP, the head), times 3 for a train step (the backward pass costs twice
the forward). Elementwise work (softmax, LayerNorm, GELU, the optimizer) is left out, as in the
PaLM paper's MFU. XLA's cost analysis of the default CIFAR ViT's train step on the CPU counts
about 1.6% more, that elementwise work (tests/test_benchmarks.py); on GPUs it scores cuBLAS and
cuDNN calls as -1 FLOP, so it cannot be used there.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class VitShape:
    """What the FLOPs depend on: image side and channels, patch side, the encoder's sizes,
    prefix tokens (1 for a CLS token, 0 with global average pooling) and head classes."""

    image_size: int
    channels: int
    patch_size: int
    width: int
    depth: int
    mlp_dim: int
    num_classes: int
    num_prefix_tokens: int = 1

    @property
    def tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + self.num_prefix_tokens


def forward_flops_per_image(shape: VitShape) -> int:
    """Matmul FLOPs of one image's forward pass."""
    t, d = shape.tokens, shape.width
    patches = (shape.image_size // shape.patch_size) ** 2
    embed = 2 * patches * (shape.patch_size**2 * shape.channels) * d
    per_block = (
        2 * t * d * 3 * d  # q, k, v
        + 2 * t * t * d  # q @ k^T, all heads
        + 2 * t * t * d  # attention @ v
        + 2 * t * d * d  # output projection
        + 2 * 2 * t * d * shape.mlp_dim  # the MLP's two layers
    )
    head = 2 * d * shape.num_classes
    return embed + shape.depth * per_block + head


def train_step_flops(shape: VitShape, batch_size: int) -> int:
    """Model FLOPs of one train step on `batch_size` images: forward and backward (3x)."""
    return 3 * forward_flops_per_image(shape) * batch_size
