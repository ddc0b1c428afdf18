"""A checkpoint at another input size: its position embedding resampled as timm does.

timm's `resample_abs_pos_embed` (what its ViTs run with `dynamic_img_size=True`) keeps the
prefix tokens' positions apart and resizes the [gh, gw] grid of patch positions with PyTorch's
antialiased bicubic interpolation (`F.interpolate(..., mode="bicubic", antialias=True)`), which
is `jax.image.resize(..., "bicubic", antialias=True)`: the Keys cubic with a = -0.5, the kernel
widened by the scale when shrinking, weights renormalised at the borders.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from vit_locality.errors import UserError
from vit_locality.external.params import Loaded, checked


def at_image_size(loaded: Loaded, image_size: tuple[int, int]) -> Loaded:
    """`loaded` for inputs of `image_size` (H, W) pixels, multiples of the patch size.

    Returns:
      `loaded` itself when the size is its own; else a copy whose `pos_embedding`
      [1, P' + gh * gw, D] (P' = the prefix tokens it covers, possibly 0) is resampled to the new
      grid, the prefix positions unchanged.
    """
    if tuple(image_size) == tuple(loaded.image_size):
        return loaded
    model = loaded.model
    patch = model.patch_size
    if image_size[0] % patch or image_size[1] % patch:
        raise UserError(
            f"--image_size={image_size[0]} is not allowed: a multiple of the patch size {patch}"
        )
    old = (loaded.image_size[0] // patch, loaded.image_size[1] // patch)
    new = (image_size[0] // patch, image_size[1] // patch)
    pos = np.asarray(loaded.params["pos_embedding"], np.float32)
    prefix = model.num_prefix_tokens if model.pos_embed_prefix else 0
    grid = pos[0, prefix:].reshape(*old, -1)
    resized = jax.image.resize(grid, (*new, grid.shape[-1]), "bicubic", antialias=True)
    pos = np.concatenate([pos[:, :prefix], np.asarray(resized).reshape(1, -1, grid.shape[-1])], 1)
    params = {**loaded.params, "pos_embedding": pos}
    return checked(dataclasses.replace(loaded, params=params, image_size=tuple(image_size)))
