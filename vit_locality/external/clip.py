"""The image tower of OpenAI CLIP and OpenCLIP checkpoints (their own layout, not timm's or
Hugging Face's), without torch for safetensors.

Both libraries' `VisionTransformer` (`clip/model.py`, `open_clip/transformer.py`) hold, under
`visual.` in a whole CLIP's state dict (or without the prefix in an image tower's): `conv1.weight`
[D, 3, P, P] (no bias), `class_embedding` [D], `positional_embedding` [1 + N, D], `ln_pre` (a
LayerNorm before the blocks), per block `transformer.resblocks.N.{ln_1, attn.in_proj_weight
[3D, D] (rows [q; k; v]) and in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}` (OpenCLIP:
optional layer scale `ls_1.gamma`, `ls_2.gamma`), `ln_post` and `proj` [D, E] (the image
embedding, read as a head without bias). LayerNorm eps 1e-5. The text tower and `logit_scale`
are not part of the image model and are not read.

Sources: an OpenCLIP hub folder (`open_clip_config.json` + `open_clip_model.safetensors`, or
`open_clip_pytorch_model.bin` with torch), which names the width per head (`head_width`, 64 by
default), the activation (`quick_gelu`) and the preprocessing (`preprocess_cfg`: mean, std,
interpolation, resize_mode); or a bare state dict (`.safetensors`, `.pt` / `.pth` / `.bin` with
torch, OpenAI's TorchScript `.pt` included): heads width / 64 (`--num_heads` otherwise), OpenAI's
QuickGELU (`--gelu=exact` for OpenCLIP's own GELU models), OpenAI's transform (resize the shorter
side to the size, bicubic, centre crop; mean (0.48145466, 0.4578275, 0.40821073), std
(0.26862954, 0.26130258, 0.27577711)). An OpenCLIP folder whose tower is a timm model
(`vision_cfg.timm_model_name`, `visual.trunk.`: OpenCLIP's SigLIP models) is read by the timm
loader (`_timm_trunk`); `final_ln_after_pool` is the LayerNorm after the pooling. Towers OpenCLIP
builds otherwise (attentional pooling, no `ln_pre`, no class token, custom blocks) are refused
with one line naming what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from vit_locality.errors import UserError
from vit_locality.external.params import (
    Arrays,
    Loaded,
    checked,
    heads_of,
    read_state_dict,
    take_torch_norm,
)
from vit_locality.external.preprocess import Preprocessing
from vit_locality.external.timm import load_timm_state
from vit_locality.external.torchvision_vit import in_proj_attention
from vit_locality.models import ViT

FAMILY = "CLIP image tower (OpenAI / OpenCLIP layout)"
FEATURES = {  # a part of OpenCLIP's array names -> the vision_cfg option it comes from
    ".ln_attn.": "scale_attn",
    ".mlp.ln.": "scale_fc",
    ".attn.head_scale": "scale_heads",
    ".attn.logit_scale": "scaled_cosine_attn",
    ".attn.ln_inner.": "scale_attn_inner",
    ".ln_q.": "qk_norm",
    "attn_pool": "attentional_pool",
}
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CONFIG = "open_clip_config.json"
WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def is_clip(names: list[str]) -> bool:
    """Whether a state dict's names are OpenAI CLIP's / OpenCLIP's (whole model or image tower)."""
    return any(
        n in ("visual.conv1.weight", "conv1.weight") or n.startswith("visual.trunk.") for n in names
    )


def load_clip(path: pathlib.Path, num_heads: int | None = None) -> Loaded:
    """The image tower of the OpenCLIP hub folder, or of the bare CLIP state dict, `path`.

    Raises:
      UserError: a file is missing, a `.pt` without torch, or a tower this ViT cannot be.
    """
    if path.is_dir():
        config_path = path / CONFIG
        if not config_path.is_file():
            raise UserError(f"--checkpoint={path} is not an OpenCLIP hub folder: no {CONFIG}")
        config = json.loads(config_path.read_text())
        weights = next((path / w for w in WEIGHTS if (path / w).is_file()), None)
        if weights is None:
            raise UserError(f"{path} has no {' or '.join(WEIGHTS)} (OpenCLIP hub folders hold one)")
        state = read_state_dict(weights)
        model_cfg = config.get("model_cfg", {})
        vision = model_cfg.get("vision_cfg", {})
        width = vision.get("width", 768)
        heads = num_heads or width // vision.get("head_width", 64)
        quick = bool(model_cfg.get("quick_gelu", False))
        prep = config.get("preprocess_cfg", {})
        if vision.get("timm_model_name"):
            return _timm_trunk(state, str(weights), path, vision, prep)
        if vision.get("attentional_pool"):
            raise UserError(f"{path}: {FAMILY}: needs attentional_pool support")
        if vision.get("no_ln_pre"):
            raise UserError(f"{path}: {FAMILY}: needs no_ln_pre support")
        after_pool = bool(vision.get("final_ln_after_pool"))
        if vision.get("pool_type", "tok") != "tok":
            raise UserError(
                f"{path}: {FAMILY}: needs pool_type={vision['pool_type']!r} support "
                "(the class token's is read)"
            )
    else:
        weights = path
        state = read_state_dict(path)
        heads, quick, prep, after_pool = num_heads, True, {}, False
    return _load(state, str(weights), path, heads, quick, prep, after_pool)


def _timm_trunk(
    state: dict[str, np.ndarray], source: str, where: pathlib.Path, vision: dict, prep: dict
) -> Loaded:
    """An OpenCLIP image tower that is a timm model (`visual.trunk.`, as OpenCLIP's SigLIP
    models are), read by the timm loader as `vision_cfg.timm_model_name` pooled by `timm_pool`
    at `image_size`, with the folder's preprocess_cfg. What OpenCLIP puts after the trunk
    (`visual.head`: a projection or MLP, for timm_proj linear / mlp) is not read: the blocks are
    analysed, the model's output is the trunk's pooled vector."""
    mode = prep.get("resize_mode", "shortest")
    if mode not in ("shortest", "squash"):
        raise UserError(
            f"{where}: {FAMILY}: preprocess_cfg resize_mode={mode!r} is not supported: "
            "shortest or squash"
        )
    size = vision.get("image_size", 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    config = {
        "architecture": vision["timm_model_name"],
        "global_pool": vision.get("timm_pool", "avg") or "token",
        "model_args": {},
        "pretrained_cfg": {
            "input_size": [3, *size],
            "crop_pct": 1.0,
            "crop_mode": "squash" if mode == "squash" else "center",
            "interpolation": prep.get("interpolation", "bicubic"),
            "mean": prep.get("mean", OPENAI_MEAN),
            "std": prep.get("std", OPENAI_STD),
        },
    }
    trunk = {
        n.removeprefix("visual.trunk."): a
        for n, a in state.items()
        if n.startswith("visual.trunk.")
    }
    loaded = load_timm_state(trunk, source, config, where)
    name = f"OpenCLIP image tower, timm {vision['timm_model_name']} ({where})"
    return dataclasses.replace(loaded, format="clip", name=name)


def _load(
    state: dict[str, np.ndarray],
    source: str,
    where: pathlib.Path,
    heads: int | None,
    quick: bool,
    prep: dict,
    after_pool: bool,
) -> Loaded:
    if any(n.startswith("visual.trunk.") for n in state):
        raise UserError(
            f"{where}: OpenCLIP image tower with a timm trunk (visual.trunk): needs its "
            "OpenCLIP folder (open_clip_config.json names the timm model), or the trunk's "
            "state dict with --format=timm --arch=NAME"
        )
    base = "visual." if "visual.conv1.weight" in state else ""
    if f"{base}conv1.weight" not in state:
        raise UserError(f"{where}: {FAMILY}: no image tower (visual.conv1) in it")
    arrays = {n.removeprefix(base): a for n, a in state.items() if n.startswith(base)}
    arrays = Arrays(arrays, source, FAMILY)
    for missing, what in (
        ("ln_pre.weight", "needs ln_pre (OpenCLIP's no_ln_pre towers are not supported)"),
        (
            "class_embedding",
            "needs a class token (OpenCLIP's towers without one are not supported)",
        ),
        ("transformer.resblocks.0.attn.in_proj_weight", "needs a fused in_proj attention"),
    ):
        if missing not in arrays:
            raise UserError(f"{where}: {FAMILY}: {what}")
    if "attn_pool.query" in arrays or "attn_pool.attn.in_proj_weight" in arrays:
        raise UserError(f"{where}: {FAMILY}: needs attentional pooling (attn_pool) support")
    width, _, patch, _ = arrays.shape("conv1.weight")
    heads = heads_of(width, heads)
    depth = sum(1 for n in arrays.names() if n.endswith(".ln_1.weight"))
    positions = arrays.shape("positional_embedding")[0]
    side = round((positions - 1) ** 0.5)
    if side * side != positions - 1:
        raise UserError(
            f"{where}: {FAMILY}: positional_embedding's {positions} positions are not "
            "the class token and a square grid"
        )
    prefix = "transformer.resblocks."
    has_proj = "proj" in arrays
    model = ViT(
        num_classes=arrays.shape("proj")[1] if has_proj else 0,
        patch_size=patch,
        width=width,
        depth=depth,
        num_heads=heads,
        mlp_dim=arrays.shape(prefix + "0.mlp.c_fc.weight")[0],
        pool="cls",
        pos_embed_prefix=True,
        gelu_approximate=False,
        activation="quick_gelu" if quick else "gelu",
        layer_norm_eps=1e-5,
        layer_scale_init=1.0 if prefix + "0.ls_1.gamma" in arrays else None,
        patch_bias=False,
        norm_pre=True,
        norm_after_pool=after_pool,  # final_ln_after_pool: ln_post on the class token only
    )
    params = {
        "embedding": {"kernel": arrays.take("conv1.weight").transpose(2, 3, 1, 0)},
        "cls": arrays.take("class_embedding").reshape(1, 1, width),
        "pos_embedding": arrays.take("positional_embedding")[None],
        "norm_pre": take_torch_norm(arrays, "ln_pre"),
        "encoder_norm": take_torch_norm(arrays, "ln_post"),
    }
    if has_proj:  # x @ proj: already [D, E]
        proj = arrays.take("proj")
        params["head"] = {"kernel": proj, "bias": np.zeros(proj.shape[1], np.float32)}
    for i in range(depth):
        block = f"{prefix}{i}."
        params[f"block{i:02d}"] = {
            "norm1": take_torch_norm(arrays, block + "ln_1"),
            "norm2": take_torch_norm(arrays, block + "ln_2"),
            "attn": in_proj_attention(arrays, block + "attn.", width, heads),
            "mlp": {
                fc: {
                    "kernel": arrays.take(f"{block}mlp.{c}.weight").T,
                    "bias": arrays.take(f"{block}mlp.{c}.bias"),
                }
                for fc, c in (("fc1", "c_fc"), ("fc2", "c_proj"))
            },
        }
        for ls in ("ls_1", "ls_2"):
            if f"{block}{ls}.gamma" in arrays:
                params[f"block{i:02d}"][ls.replace("_", "")] = {
                    "scale": arrays.take(f"{block}{ls}.gamma")
                }
    arrays.refuse_unread(FAMILY, FEATURES)
    size = side * patch
    params_prep = _preprocessing(prep, size)
    name = f"{FAMILY} ({where})"
    return checked(Loaded(model, params, params_prep, (size, size), "clip", name))


def _preprocessing(prep: dict, size: int) -> Preprocessing:
    """OpenCLIP's eval `image_transform` from a `preprocess_cfg` (OpenAI's values by default):
    resize_mode "shortest" (shorter side to the size, centre crop) or "squash" (both sides)."""
    mode = prep.get("resize_mode", "shortest")
    if mode not in ("shortest", "squash"):
        raise UserError(
            f"{FAMILY}: preprocess_cfg resize_mode={mode!r} is not supported: shortest or squash"
        )
    return Preprocessing(
        image_size=(size, size),
        resize=size if mode == "shortest" else (size, size),
        interpolation=prep.get("interpolation", "bicubic"),
        crop_rounding="round",
        mean=tuple(prep.get("mean", OPENAI_MEAN)),
        std=tuple(prep.get("std", OPENAI_STD)),
    )
