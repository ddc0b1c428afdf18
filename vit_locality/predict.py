"""The model as evaluation sees it: uint8 images in, normalized with the dataset's statistics,
then the ViT. Built once per run; eval, the locality analysis and the figures call it."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vit_locality.datasets import DATASETS
from vit_locality.models import ViT


def normalize(images: jax.Array, mean: tuple[float, ...], std: tuple[float, ...]) -> jax.Array:
    """uint8 [B, H, W, C] -> float32 (x / 255 - mean) / std, per channel."""
    mean_ = np.asarray(mean, np.float32)
    std_ = np.asarray(std, np.float32)
    return (images.astype(jnp.float32) / 255.0 - mean_) / std_


@dataclasses.dataclass(frozen=True)
class Predictor:
    """`predictor(params, uint8 images [B, H, W, C], **model kwargs) -> (logits, out)`.

    Hashable (a static argument of jitted functions). `mean` and `std` are per channel, in
    [0, 1] units. `precision` is JAX's matmul precision while tracing the model (None: JAX's
    default, which is TF32 on NVIDIA GPUs and one bfloat16 pass on TPUs).
    """

    model: ViT
    mean: tuple[float, ...]
    std: tuple[float, ...]
    precision: str | None = None

    @classmethod
    def for_dataset(cls, model: ViT, dataset: str) -> Predictor:
        info = DATASETS[dataset]
        return cls(model, tuple(info.mean), tuple(info.std))

    def __call__(self, params: Any, images: jax.Array, **kwargs: Any) -> tuple[jax.Array, dict]:
        precision = self.precision
        with jax.default_matmul_precision(precision) if precision else contextlib.nullcontext():
            return self.model.apply(
                {"params": params}, normalize(images, self.mean, self.std), **kwargs
            )

    def in_float32(self) -> Predictor:
        """This predictor computing in float32 at full float32 precision on every backend,
        whatever the model's compute dtype: attention is analysed in float32 (a bfloat16 q.k,
        or a TF32 or one-pass bfloat16 matmul, would shift every metric by its rounding)."""
        return dataclasses.replace(
            self, model=self.model.clone(dtype=jnp.float32), precision="highest"
        )
