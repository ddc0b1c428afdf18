"""torchvision's ViTs (`torchvision.models.vit_b_16`, `vit_b_32`, `vit_l_16`, `vit_l_32`,
`vit_h_14`) from their state dict, a `.pth` (read with torch) or the same saved as
`.safetensors` (read without it).

`torchvision.models.vision_transformer.VisionTransformer`'s state dict: `class_token` [1, 1, D],
`conv_proj.weight` [D, 3, P, P] and `bias`, `encoder.pos_embedding` [1, 1 + N, D] (over the class
token), per block `encoder.layers.encoder_layer_N.{ln_1, self_attention.in_proj_weight [3D, D]
(rows [q; k; v]) and in_proj_bias, self_attention.out_proj, ln_2, mlp.0, mlp.3}` (`mlp.linear_1`,
`mlp.linear_2` in files older than torchvision 0.12), `encoder.ln`, `heads.head`. LayerNorm eps
1e-6, exact GELU, the class token's final state is pooled. No shape shows the heads: `--num_heads`,
else torchvision's for the width (768: 12, 1024: 16, 1280: 16), else width / 64. The input size
comes from the position embedding (a square grid). The transform is the one torchvision's weights
name (`ImageClassification`): at 224 px, `IMAGENET1K_V1`'s (resize the shorter side to 256,
bilinear, centre crop 224), at other sizes the SWAG weights' (resize to the size itself, bicubic);
ImageNet's mean and std.
"""

from __future__ import annotations

import pathlib

from vit_locality.errors import UserError
from vit_locality.external.params import (
    Arrays,
    Loaded,
    attention_out,
    checked,
    heads_of,
    read_state_dict,
    take_torch_dense,
    take_torch_norm,
    torch_patch_kernel,
)
from vit_locality.external.preprocess import Preprocessing
from vit_locality.models import ViT

FAMILY = "torchvision ViT"
WIDTH_HEADS = {768: 12, 1024: 16, 1280: 16}  # vit_b_*, vit_l_*, vit_h_14
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def is_torchvision(names: list[str]) -> bool:
    """Whether a state dict's names are torchvision's VisionTransformer's."""
    return "conv_proj.weight" in names or "encoder.pos_embedding" in names


def load_torchvision(path: pathlib.Path, num_heads: int | None = None) -> Loaded:
    """The torchvision ViT whose state dict is the file `path` (`num_heads` overrides the heads
    its width implies).

    Raises:
      UserError: not a file, a `.pth` without torch, a part this ViT does not have (the
        `representation_size` layer `heads.pre_logits`, a convolutional stem), or a position
        embedding that is not a square grid.
    """
    if not path.is_file():
        raise UserError(f"--checkpoint={path}: a torchvision ViT is a state dict file (.pth)")
    arrays = Arrays(read_state_dict(path), str(path), FAMILY)
    names = arrays.names()
    if not is_torchvision(names):
        raise UserError(f"{path} is not a torchvision ViT state dict (it has no conv_proj)")
    if "heads.pre_logits.weight" in arrays:
        raise UserError(
            f"{path}: {FAMILY} with a representation layer (representation_size, "
            "heads.pre_logits) is not supported"
        )
    if "conv_proj.weight" not in arrays:
        raise UserError(
            f"{path}: {FAMILY} with a convolutional stem (conv_stem_configs) is not "
            "supported: this ViT's stem is one patch convolution"
        )
    width, _, patch, _ = arrays.shape("conv_proj.weight")
    heads = heads_of(width, num_heads or WIDTH_HEADS.get(width))
    depth = sum(1 for n in names if n.endswith(".ln_1.weight"))
    positions = arrays.shape("encoder.pos_embedding")[1]
    side = round((positions - 1) ** 0.5)
    if side * side != positions - 1:
        raise UserError(
            f"{path}: encoder.pos_embedding's {positions} positions are not the class "
            "token and a square grid"
        )
    mlp = "mlp.0" if "encoder.layers.encoder_layer_0.mlp.0.weight" in arrays else "mlp.linear_1"
    mlp_out = "mlp.3" if mlp == "mlp.0" else "mlp.linear_2"
    first = f"encoder.layers.encoder_layer_0.{mlp}.weight"
    model = ViT(
        num_classes=arrays.shape("heads.head.weight")[0] if "heads.head.weight" in arrays else 0,
        patch_size=patch,
        width=width,
        depth=depth,
        num_heads=heads,
        mlp_dim=arrays.shape(first)[0],
        pool="cls",
        pos_embed_prefix=True,
        gelu_approximate=False,
        layer_norm_eps=1e-6,
    )
    params = {
        "embedding": {
            "kernel": torch_patch_kernel(arrays.take("conv_proj.weight")),
            "bias": arrays.take("conv_proj.bias"),
        },
        "pos_embedding": arrays.take("encoder.pos_embedding"),
        "cls": arrays.take("class_token"),
        "encoder_norm": take_torch_norm(arrays, "encoder.ln"),
    }
    if "heads.head.weight" in arrays:
        params["head"] = take_torch_dense(arrays, "heads.head")
    for i in range(depth):
        layer = f"encoder.layers.encoder_layer_{i}."
        params[f"block{i:02d}"] = {
            "norm1": take_torch_norm(arrays, layer + "ln_1"),
            "norm2": take_torch_norm(arrays, layer + "ln_2"),
            "attn": in_proj_attention(arrays, layer + "self_attention.", width, heads),
            "mlp": {
                "fc1": take_torch_dense(arrays, layer + mlp),
                "fc2": take_torch_dense(arrays, layer + mlp_out),
            },
        }
    arrays.refuse_unread(FAMILY)
    size = side * patch
    if size == 224:  # IMAGENET1K_V1: ImageClassification(crop_size=224), resize 256, bilinear
        preprocessing = Preprocessing((224, 224), 256, "bilinear", "round", *IMAGENET)
    else:  # the SWAG weights (384, 512, 518 px): resize to the crop itself, bicubic
        preprocessing = Preprocessing((size, size), size, "bicubic", "round", *IMAGENET)
    name = f"{FAMILY} ({path})"
    return checked(Loaded(model, params, preprocessing, (size, size), "torchvision", name))


def in_proj_attention(arrays: Arrays, prefix: str, width: int, heads: int) -> dict:
    """PyTorch's `nn.MultiheadAttention` (`in_proj_weight` [3D, D] with rows [q; k; v] and
    `in_proj_bias`, `out_proj`) at `prefix` as this project's `attn` parameters."""
    weight = arrays.take(prefix + "in_proj_weight")
    bias = arrays.take(prefix + "in_proj_bias")
    return {
        "qkv": {
            "kernel": weight.T.reshape(width, 3, heads, width // heads),
            "bias": bias.reshape(3, heads, width // heads),
        },
        "out": attention_out(
            arrays.take(prefix + "out_proj.weight").T, arrays.take(prefix + "out_proj.bias"), heads
        ),
    }
