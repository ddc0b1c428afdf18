"""A Vision Transformer for small images (Flax Linen) that can return its attention maps.

The architecture is the standard pre-norm ViT (Dosovitskiy et al. 2021) at the small-dataset size
of Lee et al. 2021: non-overlapping patches, a learned position embedding, an optional CLS token,
pre-LayerNorm blocks with multi-head self-attention and a GELU MLP, a final LayerNorm and a linear
head. The variants of other people's ViTs (timm, big_vision, Hugging Face; see
`vit_locality/external/`) are fields whose defaults are this project's model: distillation and
register tokens, a position embedding that also covers the prefix tokens, the LayerNorm after the
pooling, exact GELU, the LayerNorm epsilon, layer scale and no head; CLIP's LayerNorm before the
blocks (`norm_pre`), its patch embedding without bias and its QuickGELU. The attention is written
out (not `nn.MultiHeadDotProductAttention`) so that the post-softmax probabilities are an explicit
output, always computed in float32.

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

- `attention_carry`: (only with `reduce_attention` and an initial `attention_carry`) the carry
  after the last layer: then `reduce_attention(probs, carry) -> (reduced, carry)` is called layer
  by layer, the carry passed from one layer's reduction to the next (e.g. attention rollout).

`reduce_attention` is for analysing attention on large inputs: each layer's reduction is finished
(`jax.lax.optimization_barrier`) before the next block starts, so under `jax.jit` the maps of one
layer are freed before the next layer's exist and the peak memory is about one layer's maps, not
`depth` layers'. It adds no parameters and changes no other output.
"""

from __future__ import annotations

import functools
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


def quick_gelu(x: jax.Array) -> jax.Array:
    """OpenAI CLIP's QuickGELU, `x * sigmoid(1.702 x)`."""
    return x * jax.nn.sigmoid(1.702 * x)


class MlpBlock(nn.Module):
    """Dense -> GELU (or QuickGELU) -> Dense, [B, T, D] -> [B, T, D]."""

    mlp_dim: int
    gelu_approximate: bool = True
    dtype: Dtype = jnp.float32
    activation: Literal["gelu", "quick_gelu"] = "gelu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        x = nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1")(x)
        if self.activation == "quick_gelu":
            x = quick_gelu(x)
        else:
            x = nn.gelu(x, approximate=self.gelu_approximate)
        return nn.Dense(width, dtype=self.dtype, name="fc2")(x)


class LayerScale(nn.Module):
    """Per-channel scale `x * scale` (CaiT / DeiT III layer scale), [..., D] -> [..., D]."""

    init_value: float
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param(
            "scale", nn.initializers.constant(self.init_value), (x.shape[-1],), jnp.float32
        )
        return x * scale.astype(self.dtype)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block; returns (tokens [B, T, D], attention probs [B, H, T, T]).

    With `layer_scale_init` set, each residual branch is scaled per channel (`ls1`, `ls2`)."""

    num_heads: int
    mlp_dim: int
    gelu_approximate: bool = True
    layer_norm_eps: float = 1e-6
    layer_scale_init: float | None = None
    dtype: Dtype = jnp.float32
    activation: Literal["gelu", "quick_gelu"] = "gelu"

    def _scaled(self, y: jax.Array, name: str) -> jax.Array:
        if self.layer_scale_init is None:
            return y
        return LayerScale(self.layer_scale_init, dtype=self.dtype, name=name)(y)

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        norm = functools.partial(nn.LayerNorm, epsilon=self.layer_norm_eps, dtype=self.dtype)
        y, probs = SelfAttention(self.num_heads, dtype=self.dtype, name="attn")(
            norm(name="norm1")(x)
        )
        x = x + self._scaled(y, "ls1")
        mlp = MlpBlock(self.mlp_dim, self.gelu_approximate, self.dtype, self.activation, name="mlp")
        y = mlp(norm(name="norm2")(x))
        return x + self._scaled(y, "ls2"), probs


class ViT(nn.Module):
    """Vision Transformer. Images [B, H, W, C] (normalized floats) -> (logits, out).

    Attributes:
      num_classes: size of the classification head; 0: no head, `logits` is `pre_logits`.
      patch_size: side of the square, non-overlapping patches, in pixels.
      width: token dimension D; must be divisible by `num_heads`.
      depth: number of encoder blocks.
      num_heads: attention heads per block.
      mlp_dim: hidden size of the MLP.
      pool: "cls" (the CLS token's final state) or "gap" (the mean of the patch tokens).
      class_token: a learned CLS token (`cls`) first among the prefix tokens; None: when
        `pool == "cls"`.
      distill_token: DeiT's distillation token (`dist`) after the CLS token; the logits are then
        the mean of `head` on the CLS token and `head_dist` on the distillation token.
      num_registers: learned register tokens (`reg`, Darcet et al. 2024) after those.
      pos_embed_prefix: the position embedding also covers the prefix tokens (added after they
        are prepended, as in the original ViT, timm without `no_embed_class`, Hugging Face);
        False: it covers the patches only and the prefix tokens are prepended afterwards.
      norm_after_pool: the final LayerNorm is applied to the pooled vector (timm's `fc_norm`)
        instead of to every token.
      gelu_approximate: tanh GELU (Flax's default) or, False, the exact erf GELU (PyTorch's).
      activation: "gelu" (as `gelu_approximate` says) or "quick_gelu" (`x * sigmoid(1.702 x)`,
        OpenAI CLIP's), the MLP's.
      patch_bias: the patch embedding has a bias (CLIP's has none).
      norm_pre: a LayerNorm (`norm_pre`) on the tokens, position embedding added and prefix tokens
        prepended, before the first block (CLIP's `ln_pre`, timm's `norm_pre`).
      layer_norm_eps: epsilon of every LayerNorm.
      layer_scale_init: None: no layer scale; else the initial value of the per-channel scales
        `ls1`, `ls2` of each block's residual branches.
      dtype: compute dtype (e.g. bfloat16 on accelerators); parameters stay float32.

    Tokens are ordered [CLS, distillation, registers..., patches in row-major order].
    """

    num_classes: int
    patch_size: int = 4
    width: int = 192
    depth: int = 9
    num_heads: int = 12
    mlp_dim: int = 384
    pool: Literal["cls", "gap"] = "cls"
    class_token: bool | None = None
    distill_token: bool = False
    num_registers: int = 0
    pos_embed_prefix: bool = False
    norm_after_pool: bool = False
    gelu_approximate: bool = True
    layer_norm_eps: float = 1e-6
    layer_scale_init: float | None = None
    dtype: Dtype = jnp.float32
    activation: Literal["gelu", "quick_gelu"] = "gelu"
    patch_bias: bool = True
    norm_pre: bool = False

    @property
    def has_class_token(self) -> bool:
        return self.pool == "cls" if self.class_token is None else self.class_token

    @property
    def num_prefix_tokens(self) -> int:
        """P: the CLS, distillation and register tokens before the patch tokens."""
        return int(self.has_class_token) + int(self.distill_token) + self.num_registers

    def _prefix_tokens(self, batch: int) -> list[jax.Array]:
        """The learned prefix tokens, each broadcast to [batch, n, D], in token order."""
        shapes = {"cls": 1 if self.has_class_token else 0}
        shapes["dist"] = 1 if self.distill_token else 0
        shapes["reg"] = self.num_registers
        tokens = []
        for name, n in shapes.items():
            if n:
                token = self.param(name, nn.initializers.zeros, (1, n, self.width), jnp.float32)
                tokens.append(jnp.broadcast_to(token.astype(self.dtype), (batch, n, self.width)))
        return tokens

    @nn.compact
    def __call__(
        self,
        images: jax.Array,
        *,
        return_attention: bool = False,
        reduce_attention: Callable[..., Any] | None = None,
        attention_carry: Any = None,
    ) -> tuple[jax.Array, dict[str, Any]]:
        if self.pool == "cls" and not self.has_class_token:
            raise ValueError("pool='cls' needs class_token=True (or None)")
        if self.distill_token and self.norm_after_pool:
            raise ValueError("distill_token=True needs norm_after_pool=False (timm's DeiT)")
        out: dict[str, Any] = {}
        p = self.patch_size
        x = nn.Conv(
            self.width,
            (p, p),
            strides=(p, p),
            padding="VALID",
            use_bias=self.patch_bias,
            dtype=self.dtype,
            name="embedding",
        )(images.astype(self.dtype))
        out["stem"] = x
        x = einops.rearrange(x, "b gh gw d -> b (gh gw) d")
        prefix = self._prefix_tokens(x.shape[0])
        if self.pos_embed_prefix:
            x = jnp.concatenate([*prefix, x], axis=1)
        x = x + self.param(
            "pos_embedding", nn.initializers.normal(stddev=0.02), (1, *x.shape[1:]), jnp.float32
        ).astype(self.dtype)
        if not self.pos_embed_prefix:
            x = jnp.concatenate([*prefix, x], axis=1)

        norm = functools.partial(nn.LayerNorm, epsilon=self.layer_norm_eps, dtype=self.dtype)
        if self.norm_pre:
            x = norm(name="norm_pre")(x)
        attention, reduced = [], []
        for i in range(self.depth):
            x, probs = EncoderBlock(
                self.num_heads,
                self.mlp_dim,
                gelu_approximate=self.gelu_approximate,
                layer_norm_eps=self.layer_norm_eps,
                layer_scale_init=self.layer_scale_init,
                dtype=self.dtype,
                activation=self.activation,
                name=f"block{i:02d}",
            )(x)
            attention.append(probs)
            if reduce_attention is not None and attention_carry is None:
                # The next block waits for this reduction, so these maps die before the next ones.
                x, layer_reduced = jax.lax.optimization_barrier((x, reduce_attention(probs)))
                reduced.append(layer_reduced)
            elif reduce_attention is not None:
                layer_reduced, attention_carry = reduce_attention(probs, attention_carry)
                x, layer_reduced, attention_carry = jax.lax.optimization_barrier(
                    (x, layer_reduced, attention_carry)
                )
                reduced.append(layer_reduced)
        if not self.norm_after_pool:
            x = norm(name="encoder_norm")(x)
        out["encoded"] = x

        tokens = x
        x = x[:, 0] if self.pool == "cls" else x[:, self.num_prefix_tokens :].mean(axis=1)
        if self.norm_after_pool:
            x = norm(name="encoder_norm")(x)
        out["pre_logits"] = x
        logits = self._head(x, tokens).astype(jnp.float32)
        out["logits"] = logits
        if return_attention:
            out["attention"] = tuple(attention)
        if reduce_attention is not None:
            out["attention_reduced"] = tuple(reduced)
        if attention_carry is not None:
            out["attention_carry"] = attention_carry
        return logits, out

    def _head(self, pooled: jax.Array, tokens: jax.Array) -> jax.Array:
        """[B, num_classes] logits from the pooled [B, D] (and, with a distillation token, the
        final [B, T, D] tokens); the pooled vector itself when `num_classes == 0`."""
        if self.num_classes == 0:
            return pooled
        dense = functools.partial(
            nn.Dense, self.num_classes, kernel_init=nn.initializers.zeros, dtype=self.dtype
        )
        logits = dense(name="head")(pooled)
        if self.distill_token:
            dist = tokens[:, int(self.has_class_token)]
            logits = (logits + dense(name="head_dist")(dist)) / 2
        return logits
