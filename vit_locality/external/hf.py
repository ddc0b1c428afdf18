"""Hugging Face ViT and DeiT checkpoints (a `save_pretrained` folder), without torch; CLIP,
SigLIP and DINOv2 folders are read by `hf_towers`.

The folder holds `config.json` (`model_type` "vit" or "deit", `hidden_size`,
`num_hidden_layers`, `num_attention_heads`, `intermediate_size`, `hidden_act`,
`layer_norm_eps`, `image_size`, `patch_size`), `model.safetensors` and, for the preprocessing,
`preprocessor_config.json`. Weights of `ViTModel` (no prefix), `ViTForImageClassification`
(`vit.` + `classifier`) and `DeiTForImageClassificationWithTeacher` (`deit.`, a distillation
token, `cls_classifier` + `distillation_classifier`, logits their mean) are read; the position
embedding covers the prefix tokens. `ViTModel`'s pooler (a Dense + tanh on the CLS token, used by
neither the attention nor a classifier) is not loaded; without a classifier the model has no
head and `encoded` is `last_hidden_state`.
"""

from __future__ import annotations

import json
import pathlib

from vit_locality.errors import UserError
from vit_locality.external.arrays import read_safetensors
from vit_locality.external.hf_towers import FAMILIES, load_hf_tower, take_vit_attention
from vit_locality.external.params import (
    Arrays,
    Loaded,
    checked,
    read_config,
    take_torch_dense,
    take_torch_norm,
    torch_patch_kernel,
)
from vit_locality.external.preprocess import Preprocessing, hf_preprocessing
from vit_locality.models import ViT

GELUS = {"gelu": False, "gelu_new": True, "gelu_pytorch_tanh": True}  # name -> tanh approximation
HEADS = {  # ours -> theirs
    "vit": {"head": "classifier"},
    "deit": {"head": "cls_classifier", "head_dist": "distillation_classifier"},
}


def load_hf(folder: pathlib.Path) -> Loaded:
    """The ViT / DeiT in Hugging Face folder `folder`.

    Raises:
      UserError: a file is missing, the model type or activation is not supported, or the weights
        hold parts this ViT does not have (e.g. DeiTForImageClassification, whose head reads the
        CLS token alone while its distillation token attends).
    """
    config = read_config(folder, "a Hugging Face")
    kind = config.get("model_type")
    if kind in FAMILIES:  # CLIP, SigLIP, DINOv2 (and the ones refused by name)
        return load_hf_tower(folder, config)
    if kind not in HEADS:
        raise UserError(
            f"{folder}/config.json: model_type={kind!r} is not supported: vit, deit, "
            + ", ".join(k for k, (_, layout) in FAMILIES.items() if layout)
        )
    if config.get("hidden_act") not in GELUS:
        raise UserError(
            f"{folder}/config.json: hidden_act={config.get('hidden_act')!r} is not supported: "
            + ", ".join(GELUS)
        )
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"{folder} has no model.safetensors")
    arrays = read_safetensors(weights)
    base = f"{kind}."
    arrays = Arrays(
        {
            name.removeprefix(base): a
            for name, a in arrays.items()
            if not name.startswith("pooler.")
        },
        str(weights),
        f"Hugging Face {kind}",
    )
    width, heads = config["hidden_size"], config["num_attention_heads"]
    depth = config["num_hidden_layers"]
    distill = "embeddings.distillation_token" in arrays
    heads_map = {
        ours: theirs for ours, theirs in HEADS[kind].items() if f"{theirs}.weight" in arrays
    }
    if distill and "head_dist" not in heads_map and heads_map:
        raise UserError(f"{folder}: a DeiT head on the CLS token alone is not supported")
    model = ViT(
        num_classes=arrays.shape(f"{heads_map['head']}.weight")[0] if heads_map else 0,
        patch_size=config["patch_size"],
        width=width,
        depth=depth,
        num_heads=heads,
        mlp_dim=config["intermediate_size"],
        pool="cls",
        distill_token=distill,
        pos_embed_prefix=True,
        gelu_approximate=GELUS[config["hidden_act"]],
        layer_norm_eps=config.get("layer_norm_eps", 1e-12),
    )
    params = {
        "embedding": {
            "kernel": torch_patch_kernel(
                arrays.take("embeddings.patch_embeddings.projection.weight")
            ),
            "bias": arrays.take("embeddings.patch_embeddings.projection.bias"),
        },
        "pos_embedding": arrays.take("embeddings.position_embeddings"),
        "cls": arrays.take("embeddings.cls_token"),
        "encoder_norm": take_torch_norm(arrays, "layernorm"),
        **{ours: take_torch_dense(arrays, theirs) for ours, theirs in heads_map.items()},
    }
    if distill:
        params["dist"] = arrays.take("embeddings.distillation_token")
    for i in range(depth):
        layer = f"encoder.layer.{i}."
        params[f"block{i:02d}"] = {
            "norm1": take_torch_norm(arrays, layer + "layernorm_before"),
            "norm2": take_torch_norm(arrays, layer + "layernorm_after"),
            "attn": take_vit_attention(arrays, layer, heads),
            "mlp": {
                "fc1": take_torch_dense(arrays, layer + "intermediate.dense"),
                "fc2": take_torch_dense(arrays, layer + "output.dense"),
            },
        }
    arrays.refuse_unread(f"Hugging Face {kind}")
    image_size = (config["image_size"], config["image_size"])
    name = f"Hugging Face {'/'.join(config.get('architectures', [kind]))} ({folder})"
    return checked(
        Loaded(model, params, _preprocessing(folder, image_size), image_size, "hf", name)
    )


def _preprocessing(folder: pathlib.Path, image_size: tuple[int, int]) -> Preprocessing:
    """From preprocessor_config.json; without one, the ViT image processor's defaults (resize
    to the model's size, bilinear, mean = std = 0.5)."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return Preprocessing(image_size, image_size, "bilinear", "floor", (0.5,) * 3, (0.5,) * 3)
    return hf_preprocessing(json.loads(path.read_text()))
