"""Hugging Face CLIP, SigLIP and DINOv2 image models (`save_pretrained` folders), without torch.

- CLIP (`model_type` clip_vision_model: `CLIPVisionModel` / `CLIPVisionModelWithProjection`;
  clip: `CLIPModel`, its `vision_config`): `embeddings.{class_embedding [D], patch_embedding`
  (no bias), `position_embedding.weight` [1 + N, D]}, `pre_layrnorm` (the LayerNorm before the
  blocks), per layer `encoder.layers.N.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2,
  mlp.fc1, mlp.fc2}`, `post_layernorm` on the pooled class token (so `encoded` is
  `last_hidden_state`, before it) and `visual_projection` (no bias) as the head when there is
  one. The text tower and `logit_scale` are not read.
- SigLIP (siglip_vision_model: `SiglipVisionModel`; siglip: `SiglipModel`): the same layers with
  a patch bias, no class token and no pre-LayerNorm, `post_layernorm` on every token. Its
  attention-pooling head (`head`: one learned `probe` query attending over the final tokens, an
  MLP) is read and not used: it is not a self-attention layer of the tokens, so it is not in the
  analysis; the model's pooled vector is then the mean of the final tokens (not SigLIP's pooler
  output) and it has no head.
- DINOv2 (dinov2: `Dinov2Model`; dinov2_with_registers: `Dinov2WithRegistersModel`): ViT's
  names of `embeddings` (`mask_token`, used only for masked training, not read) with layer
  scale (`layer_scale1.lambda1`), `norm1`, `norm2`, `mlp.fc1`, `mlp.fc2`, `layernorm`. The
  position embedding covers the class token but not the registers, which are inserted after
  it: the class token's position is added to the token itself (the same sum) and the embedding
  kept on the patches. SwiGLU MLPs (`use_swiglu_ffn`, ViT-g) are refused.

The activation (`hidden_act`: quick_gelu, gelu, gelu_pytorch_tanh), LayerNorm eps, image and
patch size come from config.json, the preprocessing from preprocessor_config.json (CLIP's
shortest-edge resize, bicubic, centre crop and mean / std; SigLIP's resize to the size and
[-1, 1]; DINOv2's BitImageProcessor). Analysed at another size than the config's, the position
embedding is resampled as timm does (`resample.at_image_size`), not as Hugging Face's
`interpolate_pos_encoding`.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from vit_locality.errors import UserError
from vit_locality.external.arrays import read_safetensors
from vit_locality.external.params import (
    Arrays,
    Loaded,
    attention_out,
    checked,
    qkv,
    take_torch_dense,
    take_torch_norm,
    torch_patch_kernel,
)
from vit_locality.external.preprocess import hf_preprocessing
from vit_locality.models import ViT

ACTIVATIONS = {  # hidden_act -> (gelu_approximate, activation)
    "gelu": (False, "gelu"),
    "gelu_new": (True, "gelu"),
    "gelu_pytorch_tanh": (True, "gelu"),
    "quick_gelu": (False, "quick_gelu"),
}
FAMILIES = {  # model_type -> (family, vision model_type)
    "clip": ("CLIP", "clip"),
    "clip_vision_model": ("CLIP", "clip"),
    "siglip": ("SigLIP", "siglip"),
    "siglip_vision_model": ("SigLIP", "siglip"),
    "siglip2": ("SigLIP 2", None),
    "siglip2_vision_model": ("SigLIP 2", None),
    "dinov2": ("DINOv2", "dinov2"),
    "dinov2_with_registers": ("DINOv2 with registers", "dinov2"),
    "dinov3_vit": ("DINOv3", None),
}


def take_vit_attention(arrays: Arrays, layer: str, heads: int) -> dict:
    """Our `attn` parameters from a Hugging Face ViT-style self-attention (`{layer}attention.`
    `attention.{query,key,value}` and `attention.output.dense`, torch [out, in] kernels)."""
    attention = f"{layer}attention.attention."
    return {
        "qkv": qkv(
            [arrays.take(f"{attention}{n}.weight").T for n in ("query", "key", "value")],
            [arrays.take(f"{attention}{n}.bias") for n in ("query", "key", "value")],
            heads,
        ),
        "out": attention_out(
            arrays.take(f"{layer}attention.output.dense.weight").T,
            arrays.take(f"{layer}attention.output.dense.bias"),
            heads,
        ),
    }


def load_hf_tower(folder: pathlib.Path, config: dict) -> Loaded:
    """The CLIP / SigLIP / DINOv2 image model in Hugging Face folder `folder` (config.json read
    as `config`).

    Raises:
      UserError: one line naming the family and what it needs that this ViT does not have.
    """
    kind = config["model_type"]
    family, layout = FAMILIES[kind]
    where = f"{folder}: Hugging Face {family} image model"
    if kind == "dinov3_vit":
        raise UserError(
            f"{where} uses rotary position embedding (RoPE), which this ViT does "
            "not have: not supported"
        )
    if layout is None:
        raise UserError(
            f"{where}: needs variable-resolution patches (NaFlex) support: not supported"
        )
    vision = config.get("vision_config", config) if kind in ("clip", "siglip") else config
    act = vision.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise UserError(f"{where}: hidden_act={act!r} is not supported: {', '.join(ACTIVATIONS)}")
    if vision.get("use_swiglu_ffn"):
        raise UserError(f"{where}: needs SwiGLU MLP support (use_swiglu_ffn): not supported")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"{folder} has no model.safetensors")
    state = read_safetensors(weights)
    width, heads = vision["hidden_size"], vision["num_attention_heads"]
    depth, patch = vision["num_hidden_layers"], vision["patch_size"]
    approximate, activation = ACTIVATIONS[act]
    common = dict(
        patch_size=patch,
        width=width,
        depth=depth,
        num_heads=heads,
        mlp_dim=vision["intermediate_size"],
        gelu_approximate=approximate,
        activation=activation,
        layer_norm_eps=vision.get("layer_norm_eps", 1e-5 if layout == "clip" else 1e-6),
    )
    source = f"Hugging Face {family}"
    if layout == "dinov2":  # its MLP size is mlp_ratio * width (no intermediate_size)
        common["mlp_dim"] = int(width * vision.get("mlp_ratio", 4))
        model, params, arrays = _dinov2(Arrays(state, str(weights), source), common, heads)
    else:
        model, params, arrays = _clip_like(state, str(weights), source, layout, common, heads)
    arrays.refuse_unread(f"Hugging Face {family}", {"mlp.weights_in": "a SwiGLU MLP"})
    size = vision["image_size"]
    image_size = (size, size) if isinstance(size, int) else tuple(size)
    preprocessor = folder / "preprocessor_config.json"
    if not preprocessor.is_file():
        raise UserError(
            f"{where}: no preprocessor_config.json (its image processor's settings; "
            "save the processor beside the model, or give --mean, --std, --resize)"
        )
    preprocessing = hf_preprocessing(json.loads(preprocessor.read_text()))
    name = f"Hugging Face {'/'.join(config.get('architectures', [kind]))} ({folder})"
    return checked(Loaded(model, params, preprocessing, image_size, "hf", name))


def _clip_like(
    state: dict, source: str, label: str, layout: str, common: dict, heads: int
) -> tuple[ViT, dict, Arrays]:
    """CLIP's or SigLIP's vision model (`vision_model.` prefix in a whole model)."""
    base = "vision_model." if any(n.startswith("vision_model.") for n in state) else ""
    kept = {n.removeprefix(base): a for n, a in state.items() if n.startswith(base)}
    projection = state.get("visual_projection.weight")  # CLIPModel, CLIPVisionModelWithProjection
    arrays = Arrays(kept, source, label)
    clip = layout == "clip"
    width = common["width"]
    model = ViT(
        num_classes=projection.shape[0] if projection is not None else 0,
        pool="cls" if clip else "gap",
        class_token=clip,
        pos_embed_prefix=clip,
        norm_after_pool=clip,  # CLIP's post_layernorm: on the pooled class token only
        patch_bias=not clip,
        norm_pre=clip,
        **common,
    )
    emb = "embeddings."
    params: dict = {
        "embedding": {"kernel": torch_patch_kernel(arrays.take(emb + "patch_embedding.weight"))},
        "pos_embedding": arrays.take(emb + "position_embedding.weight")[None],
        "encoder_norm": take_torch_norm(arrays, "post_layernorm"),
    }
    if clip:
        params["cls"] = arrays.take(emb + "class_embedding").reshape(1, 1, width)
        params["norm_pre"] = take_torch_norm(arrays, "pre_layrnorm")
    else:
        params["embedding"]["bias"] = arrays.take(emb + "patch_embedding.bias")
        for name in arrays.names():  # the MAP head: read, not used (see the docstring)
            if name.startswith("head."):
                arrays.take(name)
    if projection is not None:
        params["head"] = {
            "kernel": projection.T,
            "bias": np.zeros(projection.shape[0], np.float32),
        }
    for i in range(common["depth"]):
        layer = f"encoder.layers.{i}."
        attn = f"{layer}self_attn."
        params[f"block{i:02d}"] = {
            "norm1": take_torch_norm(arrays, layer + "layer_norm1"),
            "norm2": take_torch_norm(arrays, layer + "layer_norm2"),
            "attn": {
                "qkv": qkv(
                    [arrays.take(f"{attn}{n}_proj.weight").T for n in "qkv"],
                    [arrays.take(f"{attn}{n}_proj.bias") for n in "qkv"],
                    heads,
                ),
                "out": attention_out(
                    arrays.take(f"{attn}out_proj.weight").T,
                    arrays.take(f"{attn}out_proj.bias"),
                    heads,
                ),
            },
            "mlp": {fc: take_torch_dense(arrays, f"{layer}mlp.{fc}") for fc in ("fc1", "fc2")},
        }
    return model, params, arrays


def _dinov2(arrays: Arrays, common: dict, heads: int) -> tuple[ViT, dict, Arrays]:
    """Dinov2Model / Dinov2WithRegistersModel (no prefix; `dinov2.` in a classifier's folder)."""
    if any(n.startswith("dinov2.") or n.startswith("classifier.") for n in arrays.names()):
        raise UserError(
            f"{arrays.source}: Hugging Face DINOv2 with a classifier "
            "(Dinov2ForImageClassification): needs support for its head on the class "
            "token and the mean patch; save the Dinov2Model"
        )
    emb = "embeddings."
    registers = arrays.shape(emb + "register_tokens")[1] if emb + "register_tokens" in arrays else 0
    model = ViT(
        num_classes=0,
        pool="cls",
        num_registers=registers,
        pos_embed_prefix=registers == 0,
        layer_scale_init=1.0,
        **common,
    )
    pos = arrays.take(emb + "position_embeddings")  # [1, 1 + N, D]
    cls = arrays.take(emb + "cls_token")
    if registers:  # registers sit between the class token and the patches, without a position
        cls, pos = cls + pos[:, :1], pos[:, 1:]
    arrays.take(emb + "mask_token")
    params: dict = {
        "embedding": {
            "kernel": torch_patch_kernel(arrays.take(emb + "patch_embeddings.projection.weight")),
            "bias": arrays.take(emb + "patch_embeddings.projection.bias"),
        },
        "pos_embedding": pos,
        "cls": cls,
        "encoder_norm": take_torch_norm(arrays, "layernorm"),
    }
    if registers:
        params["reg"] = arrays.take(emb + "register_tokens")
    for i in range(common["depth"]):
        layer = f"encoder.layer.{i}."
        params[f"block{i:02d}"] = {
            "norm1": take_torch_norm(arrays, layer + "norm1"),
            "norm2": take_torch_norm(arrays, layer + "norm2"),
            "attn": take_vit_attention(arrays, layer, heads),
            "mlp": {fc: take_torch_dense(arrays, f"{layer}mlp.{fc}") for fc in ("fc1", "fc2")},
            "ls1": {"scale": arrays.take(f"{layer}layer_scale1.lambda1")},
            "ls2": {"scale": arrays.take(f"{layer}layer_scale2.lambda1")},
        }
    return model, params, arrays
