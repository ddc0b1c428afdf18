"""A Vision Transformer for small images (Flax Linen) that can return its attention maps.

The architecture is the standard pre-norm ViT (Dosovitskiy et al. 2021) at the small-dataset size
of Lee et al. 2021: non-overlapping patches, a learned position embedding, an optional CLS token,
pre-LayerNorm blocks with multi-head self-attention and a GELU MLP, a final LayerNorm and a linear
head. The attention is written out (not `nn.MultiHeadDotProductAttention`) so that the
post-softmax probabilities are an explicit output, always computed in float32.

`ViT(...)(images, return_attention=True)` returns `(logits, out)`; `out` holds named
intermediates in the style of big_vision:

- `stem`:       [B, gh, gw, D] patch embeddings,
- `encoded`:    [B, T, D] tokens after the final LayerNorm (T = P + gh * gw),
- `pre_logits`: [B, D] the pooled representation (CLS token or the mean of the patch tokens),
- `logits`:     [B, num_classes],
- `attention`:  (only with `return_attention=True`) a tuple of `depth` float32 arrays
  [B, num_heads, T, T], the post-softmax attention of every layer,
- `attention_reduced`: (only with `reduce_attention=fn`) a tuple of `depth` pytrees, `fn` applied
  to each layer's float32 [B, num_heads, T, T] attention as soon as the layer has computed it.

`reduce_attention` is for analysing attention on large inputs: each layer's reduction is finished
(`jax.lax.optimization_barrier`) before the next block starts, so under `jax.jit` the maps of one
layer are freed before the next layer's exist and the peak memory is about one layer's maps, not
`depth` layers'. It adds no parameters and changes no other output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


class SelfAttention(nn.Module):
    """Multi-head self-attention that also returns its attention probabilities.

    Input [B, T, D]; returns ([B, T, D], probs [B, H, T, T] in float32).
    """

    num_heads: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        width = x.shape[-1]
        head_dim = width // self.num_heads
        qkv = nn.DenseGeneral((3, self.num_heads, head_dim), dtype=self.dtype, name="qkv")(x)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, T, H, hd] each
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(head_dim).astype(self.dtype)
        probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
        y = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(self.dtype), v)
        y = nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype, name="out")(y)
        return y, probs


class MlpBlock(nn.Module):
    """Dense -> GELU -> Dense, [B, T, D] -> [B, T, D]."""

    mlp_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        x = nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1")(x)
        x = nn.gelu(x)
        return nn.Dense(width, dtype=self.dtype, name="fc2")(x)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block; returns (tokens [B, T, D], attention probs [B, H, T, T])."""

    num_heads: int
    mlp_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        y, probs = SelfAttention(self.num_heads, dtype=self.dtype, name="attn")(
            nn.LayerNorm(dtype=self.dtype, name="norm1")(x)
        )
        x = x + y
        x = x + MlpBlock(self.mlp_dim, dtype=self.dtype, name="mlp")(
            nn.LayerNorm(dtype=self.dtype, name="norm2")(x)
        )
        return x, probs


class ViT(nn.Module):
    """Vision Transformer. Images [B, H, W, C] (normalized floats) -> (logits, out).

    Attributes:
      num_classes: size of the classification head.
      patch_size: side of the square, non-overlapping patches, in pixels.
      width: token dimension D; must be divisible by `num_heads`.
      depth: number of encoder blocks.
      num_heads: attention heads per block.
      mlp_dim: hidden size of the MLP.
      pool: "cls" (a learned CLS token, 1 prefix token) or "gap" (mean of the patch tokens, 0).
      dtype: compute dtype (e.g. bfloat16 on accelerators); parameters stay float32.
    """

    num_classes: int
    patch_size: int = 4
    width: int = 192
    depth: int = 9
    num_heads: int = 12
    mlp_dim: int = 384
    pool: Literal["cls", "gap"] = "cls"
    dtype: Dtype = jnp.float32

    @property
    def num_prefix_tokens(self) -> int:
        return 1 if self.pool == "cls" else 0

    @nn.compact
    def __call__(
        self,
        images: jax.Array,
        *,
        return_attention: bool = False,
        reduce_attention: Callable[[jax.Array], Any] | None = None,
    ) -> tuple[jax.Array, dict[str, Any]]:
        out: dict[str, Any] = {}
        p = self.patch_size
        x = nn.Conv(
            self.width, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype, name="embedding"
        )(images.astype(self.dtype))
        out["stem"] = x
        x = einops.rearrange(x, "b gh gw d -> b (gh gw) d")
        x = x + self.param(
            "pos_embedding", nn.initializers.normal(stddev=0.02), (1, *x.shape[1:]), jnp.float32
        ).astype(self.dtype)
        if self.pool == "cls":
            cls = self.param("cls", nn.initializers.zeros, (1, 1, self.width), jnp.float32)
            cls = jnp.broadcast_to(cls.astype(self.dtype), (x.shape[0], 1, self.width))
            x = jnp.concatenate([cls, x], axis=1)

        attention, reduced = [], []
        for i in range(self.depth):
            x, probs = EncoderBlock(
                self.num_heads, self.mlp_dim, dtype=self.dtype, name=f"block{i:02d}"
            )(x)
            attention.append(probs)
            if reduce_attention is not None:
                # The next block waits for this reduction, so these maps die before the next ones.
                x, layer_reduced = jax.lax.optimization_barrier((x, reduce_attention(probs)))
                reduced.append(layer_reduced)
        x = nn.LayerNorm(dtype=self.dtype, name="encoder_norm")(x)
        out["encoded"] = x

        x = x[:, 0] if self.pool == "cls" else x.mean(axis=1)
        out["pre_logits"] = x
        logits = nn.Dense(
            self.num_classes, kernel_init=nn.initializers.zeros, dtype=self.dtype, name="head"
        )(x).astype(jnp.float32)
        out["logits"] = logits
        if return_attention:
            out["attention"] = tuple(attention)
        if reduce_attention is not None:
            out["attention_reduced"] = tuple(reduced)
        return logits, out
