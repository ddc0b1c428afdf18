"""ViTs from .npz files of google-research/vision_transformer and big_vision, without JAX-side
libraries: the flattened Flax parameter trees, `/`-separated keys.

Two key layouts (as timm's `_load_weights` tells them apart):

- vision_transformer: `embedding/kernel` [P, P, C, D], `cls` [1, 1, D],
  `Transformer/posembed_input/pos_embedding` [1, 1 + N, D] (over the CLS token too),
  `Transformer/encoderblock_i/{LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2,
  MlpBlock_3}`, `Transformer/encoder_norm`, `head`;
- big_vision: the same under `params/`, `pos_embedding` [1, N, D] at the top (added before the
  CLS token, if any), blocks `{LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1,
  MlpBlock_0}`, global average pooling when there is no `cls`; scanned checkpoints stack every
  block under `Transformer/encoderblock/` with a leading depth axis.

Attention kernels are `query/key/value` [D, H, hd] and `out` [H, hd, D], so the head count is
read off the weights. The original code computes the tanh GELU (Flax's `nn.gelu`) and LayerNorm
eps 1e-6. The image size is the position embedding's square grid times the patch; the
preprocessing is a resize to it and x / 127.5 - 1 (mean = std = 0.5). Representation layers
(`pre_logits`) and attention-pooling heads (`MAPHead_0`) are refused with one line.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from vit_locality.errors import UserError
from vit_locality.external.arrays import read_npz
from vit_locality.external.params import Arrays, Loaded, attention_out, checked, layer_norm, qkv
from vit_locality.external.preprocess import Preprocessing
from vit_locality.models import ViT

PREFIXES = ("params/img/", "params/", "opt/target/", "")
LAYOUTS = {  # our name -> theirs, inside a block
    "vision_transformer": ("MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3"),
    "big_vision": ("MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0"),
}


def _norm(arrays: Arrays, name: str, index: int | None) -> dict:
    return layer_norm(*(_take(arrays, f"{name}/{p}", index) for p in ("scale", "bias")))


def _dense(arrays: Arrays, name: str, index: int | None) -> dict:
    return {p: _take(arrays, f"{name}/{p}", index) for p in ("kernel", "bias")}


def _take(arrays: Arrays, name: str, index: int | None) -> np.ndarray:
    array = arrays.take(name)
    return array if index is None else array[index]


def load_npz(path: pathlib.Path) -> Loaded:
    """The ViT in .npz file `path`, in either layout, scanned or not.

    Raises:
      UserError: no `embedding/kernel` under a known prefix, a position embedding that is not a
        square grid, or weights this ViT does not have.
    """
    raw = read_npz(path)
    prefix = next((p for p in PREFIXES if f"{p}embedding/kernel" in raw), None)
    if prefix is None:
        raise UserError(f"{path} has no embedding/kernel: not a ViT .npz checkpoint")
    arrays = Arrays({k.removeprefix(prefix): v for k, v in raw.items()}, str(path))
    scanned = "Transformer/encoderblock/LayerNorm_0/scale" in arrays
    big_vision = prefix.startswith("params/") or "pos_embedding" in arrays or scanned
    layout = "big_vision" if big_vision else "vision_transformer"
    arrays.family = f"{layout} ViT"
    mha, ln2, mlp = LAYOUTS[layout]

    patch, _, _, width = arrays.shape("embedding/kernel")
    if scanned:
        depth = arrays.shape("Transformer/encoderblock/LayerNorm_0/scale")[0]
        blocks = [("Transformer/encoderblock/", i) for i in range(depth)]
    else:
        depth = sum(
            1 for n in arrays.names() if n.endswith("/LayerNorm_0/scale") and "encoderblock_" in n
        )
        blocks = [(f"Transformer/encoderblock_{i}/", None) for i in range(depth)]
    first, index = blocks[0]
    heads = arrays.shape(f"{first}{mha}/query/kernel")[-2]
    pos_name = "pos_embedding" if big_vision else "Transformer/posembed_input/pos_embedding"
    has_cls = "cls" in arrays
    positions = arrays.shape(pos_name)[1]
    side = math.isqrt(positions - (has_cls and not big_vision))
    if side * side != positions - (has_cls and not big_vision):
        raise UserError(f"{path}: {pos_name} has {positions} positions, not a square grid")
    model = ViT(
        num_classes=arrays.shape("head/kernel")[-1] if "head/kernel" in arrays else 0,
        patch_size=patch,
        width=width,
        depth=depth,
        num_heads=heads,
        mlp_dim=arrays.shape(f"{first}{mlp}/Dense_0/kernel")[-1],
        pool="cls" if has_cls else "gap",
        pos_embed_prefix=has_cls and not big_vision,
        gelu_approximate=True,
        layer_norm_eps=1e-6,
    )
    params = {
        "embedding": {
            "kernel": arrays.take("embedding/kernel"),
            "bias": arrays.take("embedding/bias"),
        },
        "pos_embedding": arrays.take(pos_name),
        "encoder_norm": _norm(arrays, "Transformer/encoder_norm", None),
    }
    if has_cls:
        params["cls"] = arrays.take("cls")
    if "head/kernel" in arrays:
        params["head"] = _dense(arrays, "head", None)
    for i, (block, index) in enumerate(blocks):
        attention = f"{block}{mha}/"
        params[f"block{i:02d}"] = {
            "norm1": _norm(arrays, f"{block}LayerNorm_0", index),
            "norm2": _norm(arrays, f"{block}{ln2}", index),
            "attn": {
                "qkv": qkv(
                    [
                        _take(arrays, f"{attention}{n}/kernel", index)
                        for n in ("query", "key", "value")
                    ],
                    [
                        _take(arrays, f"{attention}{n}/bias", index)
                        for n in ("query", "key", "value")
                    ],
                    heads,
                ),
                "out": attention_out(
                    _take(arrays, f"{attention}out/kernel", index),
                    _take(arrays, f"{attention}out/bias", index),
                    heads,
                ),
            },
            "mlp": {
                "fc1": _dense(arrays, f"{block}{mlp}/Dense_0", index),
                "fc2": _dense(arrays, f"{block}{mlp}/Dense_1", index),
            },
        }
    arrays.refuse_unread(f"{layout} ViT")
    image_size = (side * patch, side * patch)
    preprocessing = Preprocessing(
        image_size, image_size, "bilinear", "floor", (0.5,) * 3, (0.5,) * 3
    )
    name = f"{layout} {'scanned ' if scanned else ''}ViT ({path})"
    return checked(Loaded(model, params, preprocessing, image_size, "big_vision", name))
