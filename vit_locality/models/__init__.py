"""Models: the ViT and its construction from a config."""

import jax.numpy as jnp
import ml_collections

from vit_locality.datasets import DATASETS
from vit_locality.models.vit import ViT

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build_model(config: ml_collections.ConfigDict) -> ViT:
    """The ViT that `config.model` describes (see configs/common.py for the fields), with a head
    for `config.dataset`'s classes."""
    model_config = config.model
    return ViT(
        num_classes=DATASETS[config.dataset].num_classes,
        patch_size=model_config.patch_size,
        width=model_config.width,
        depth=model_config.depth,
        num_heads=model_config.num_heads,
        mlp_dim=model_config.mlp_dim,
        pool=model_config.pool,
        dtype=DTYPES[model_config.dtype],
    )


__all__ = ["DTYPES", "ViT", "build_model"]
