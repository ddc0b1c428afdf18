"""timm ViTs (`vit_*`, `deit_*`, distilled ones included) from a hub folder or a bare state
dict, without torch (except to read a `.pth`).

A hub folder is what `timm.models.push_to_hf_hub` / `save_for_hf` writes: `config.json`
(`architecture`, `model_args`, `pretrained_cfg`) and `model.safetensors`, the state dict of
`timm.models.vision_transformer.VisionTransformer` (or `deit.VisionTransformerDistilled`). The
structure is read off the weights: the patch size and width from `patch_embed.proj.weight`
[D, C, P, P], the depth from `blocks.i`, the prefix tokens from `cls_token`, `dist_token`,
`reg_token` [1, R, D], whether the position embedding covers them from its length, layer scale
from `blocks.i.ls1.gamma`, the LayerNorm after the pooling from `fc_norm`, the heads (which no
shape shows) from `model_args.num_heads`, else the model name's size word, else width / 64.
timm's ViTs use exact GELU and LayerNorm eps 1e-6. Weights the ViT has no place for (e.g.
`q_norm`) are refused with one line rather than ignored.

CLIP image towers (`vit_*_clip_*`): the LayerNorm before the blocks (`norm_pre`, pre_norm=True)
and a patch embedding without bias are read off the weights, LayerNorm eps 1e-5 (every timm tower
with `norm_pre`), QuickGELU for the `_quickgelu_` models (or `model_args.act_layer`). SigLIP
(`vit_*_siglip_*`, global_pool "map"): the blocks are read and analysed; the attention-pooling
head (`attn_pool`: one learned query attending over the final tokens, then an MLP) is read and
not used. It is not a self-attention layer of the tokens, so it is not in the analysis; without
it the model's pooled vector is the mean of the final tokens and it has no head (`logits` are
not timm's; `encoded` and every block's attention are). GELU is exact, or tanh for the models
timm builds with `gelu_tanh` (TANH_GELU). ViTs with rotary position embedding (timm's `eva.py`:
EVA-02, DINOv3, PE, ...) are refused with one line naming the family.

A bare state dict (`model.safetensors`, or a `.pth` read with torch) comes with timm's model name
(`--arch`), which stands in for config.json: the heads from its size word (tiny 3, small 6,
medium 8, base 12, larger 16) unless given, average pooling without a class token, with
`fc_norm` or with `_gap` in the name, the input size from the position embedding (a square
grid), and the eval transform of timm's defaults for the family (`vit_*`: mean and std 0.5,
`deit_*`: ImageNet's, `vit_*_clip_*`: OpenAI CLIP's; crop 0.9, bicubic); a checkpoint tagged
otherwise needs `--mean`, `--std` or `--resize`.
"""

from __future__ import annotations

import pathlib

import numpy as np

from vit_locality.errors import UserError, first_line
from vit_locality.external.arrays import check_not_cut_short, finite, read_safetensors
from vit_locality.external.params import (
    Arrays,
    Loaded,
    attention_out,
    checked,
    heads_of,
    read_config,
    take_torch_dense,
    take_torch_norm,
    torch_patch_kernel,
)
from vit_locality.external.preprocess import timm_preprocessing
from vit_locality.models import ViT

POOLS = {"token": "cls", "avg": "gap", "map": "gap"}  # map: the blocks; attn_pool not used
TANH_GELU = {  # timm's vision_transformer.py models built with act_layer="gelu_tanh"
    f"vit_{size}_siglip_{pool}{res}"
    for size, res in (
        ("base_patch32", "256"),
        ("large_patch16", "512"),
        ("so400m_patch16", "256"),
        ("so400m_patch16", "384"),
        ("so400m_patch16", "512"),
        ("giantopt_patch16", "256"),
        ("giantopt_patch16", "384"),
    )
    for pool in ("", "gap_")
}
FEATURES = {  # a part of timm's array names -> the VisionTransformer option it comes from
    ".attn.q_norm.": "qk_norm (a LayerNorm on queries and keys)",
    ".attn.norm.": "scale_attn_norm",
    ".mlp.norm.": "scale_mlp_norm",
    "patch_embed.norm.": "embed_norm_layer (a norm in the patch embedding)",
    ".mlp.fc1_g.": "a SwiGLU MLP",
    ".mlp.w12.": "a SwiGLU MLP",
    "head.fc.": "an MLP head",
}
ROPE_FAMILIES = {  # timm's eva.py: name part -> family
    "eva02": "EVA-02",
    "eva_": "EVA",
    "dinov3": "DINOv3",
    "vit_pe_": "Perception Encoder",
    "rope": "RoPE ViT",
    "lingbot": "LingBot",
    "sapiens2": "Sapiens2",
}
SIZE_HEADS = {  # timm's vision_transformer.py: size word -> heads
    **{"tiny": 3, "small": 6, "medium": 8, "base": 12, "large": 16, "huge": 16, "giant": 16},
    **{"so400m": 16, "giantopt": 16, "gigantic": 16, "so150m": 14, "so150m2": 13},
    **{"betwixt": 10, "little": 5, "dlittle": 5, "mediumd": 8, "intern300m": 16, "xsmall": 4},
    **{"wee": 4, "pwee": 4, "dwee": 4, "dpwee": 4},
}
WIDTH_HEADS = {("base", 896): 14, ("giant", 1536): 24}  # vit_base_*_plus_*, DINOv2's giant
NAME_HEADS = {"vit_base_patch16_gap_224": 16}
FAMILY_NORMALIZATION = {  # timm's default mean and std per family (vision_transformer, deit _cfg)
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "deit": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


def load_timm(path: pathlib.Path, arch: str | None = None, num_heads: int | None = None) -> Loaded:
    """The timm ViT in hub folder `path` (config.json + model.safetensors), or in the bare state
    dict `path` of timm model `arch` (`num_heads` overrides the heads its name implies).

    Raises:
      UserError: a file is missing, a bare state dict without `arch`, the pooling is not
        "token" or "avg", or the weights hold parts this ViT does not have.
    """
    if path.is_file():
        refuse_rope(arch or "", path)
        return _load_state_dict(path, arch, num_heads)
    config = read_config(path, "a timm hub")
    refuse_rope(config.get("architecture", ""), path)
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"{path} has no model.safetensors (timm hub folders hold one)")
    return _load(Arrays(read_safetensors(weights), str(weights), "timm ViT"), config, path)


def _load_state_dict(path: pathlib.Path, arch: str | None, num_heads: int | None) -> Loaded:
    """A bare state dict with timm's model name standing in for its config.json."""
    family = (arch or "").split("_")[0]
    if family not in FAMILY_NORMALIZATION:
        raise UserError(
            f"--checkpoint={path} is a bare state dict: --arch=NAME is required, timm's model "
            "name (vit_* or deit_*, e.g. vit_base_patch16_224)"
        )
    arrays = Arrays(_read_state_dict(path), str(path), "timm ViT")
    width, _, patch, _ = arrays.shape("patch_embed.proj.weight")
    positions = arrays.shape("pos_embed")[1]
    prefix = sum(arrays.shape(t)[1] for t in ("cls_token", "dist_token") if t in arrays)
    side = next(
        (round(n**0.5) for n in (positions - prefix, positions) if round(n**0.5) ** 2 == n), None
    )
    if side is None:
        raise UserError(f"{path}: pos_embed's {positions} positions are not a square grid")
    mean, std = FAMILY_NORMALIZATION["clip" if "_clip_" in arch else family]
    gap = "cls_token" not in arrays or "fc_norm.weight" in arrays or "_gap" in arch
    pool = "map" if "attn_pool.latent" in arrays else "avg" if gap else "token"
    config = {
        "architecture": arch,
        "global_pool": pool,
        "model_args": {"num_heads": num_heads},
        "pretrained_cfg": {
            "input_size": [3, side * patch, side * patch],
            "crop_pct": 0.9,
            "interpolation": "bicubic",
            "mean": mean,
            "std": std,
        },
    }
    return _load(arrays, config, path)


def load_timm_state(state: dict, source: str, config: dict, where: pathlib.Path) -> Loaded:
    """A timm ViT's state dict `state` read from `source`, described by a hub config.json's
    fields `config` (`architecture`, `global_pool`, `model_args`, `pretrained_cfg`): e.g. the
    timm trunk of an OpenCLIP image tower."""
    refuse_rope(config.get("architecture", ""), where)
    return _load(Arrays(state, source, "timm ViT"), config, where)


def refuse_rope(arch: str, where: pathlib.Path) -> None:
    """One line for a model of timm's eva.py (rotary position embedding), named by family."""
    family = next((f for part, f in ROPE_FAMILIES.items() if part in arch), None)
    if family is not None:
        raise UserError(
            f"{where}: timm {arch} ({family}, timm's eva.py) uses rotary position embedding "
            "(RoPE), which this ViT does not have: not supported"
        )


def _named_heads(arch: str, width: int) -> int | None:
    """The heads timm's model name implies by its size word and the width (as timm 1.0.31's
    vision_transformer.py defines them: `vit_huge_patch14_224`: 16, `vit_so400m_*`: 16,
    `vit_giant_patch14_dinov2` (1536 wide): 24), or None; official hub folders' config.json has
    no `model_args` to say them."""
    size = next((w for w in arch.split("_") if w in SIZE_HEADS), None)
    if arch in NAME_HEADS or (size, width) in WIDTH_HEADS:
        return NAME_HEADS.get(arch) or WIDTH_HEADS[size, width]
    return SIZE_HEADS.get(size)


def _read_state_dict(path: pathlib.Path) -> dict[str, np.ndarray]:
    """name -> float32 array of a `.safetensors` file, or of a `.pth` (read with torch; a
    checkpoint that wraps the state dict in "model" or "state_dict" is unwrapped)."""
    if path.suffix != ".pth":
        return read_safetensors(path)
    check_not_cut_short(path)  # torch's files are zip archives (since PyTorch 1.6)
    try:
        import torch
    except ImportError:
        raise UserError(
            f"--checkpoint={path}: reading a .pth needs PyTorch (pip install torch), or save it "
            "as .safetensors"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # RuntimeError from its zip reader, pickle's errors, EOFError, ...
        raise UserError(
            f"{path} is damaged or not a state dict: torch.load says {first_line(e)}"
        ) from e
    for key in ("model", "state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
    return finite(path, {name: tensor.float().numpy() for name, tensor in state.items()})


def _load(arrays: Arrays, config: dict, where: pathlib.Path) -> Loaded:
    """The ViT of timm's state dict `arrays`, shaped by a hub config.json's fields."""
    weights = arrays.source
    model_args = config.get("model_args", {})
    pool = config.get("global_pool", model_args.get("global_pool", "token"))
    if pool not in POOLS:
        raise UserError(f"{where}: global_pool={pool!r} is not supported: one of token, avg, map")
    arch = config.get("architecture", "")
    pre_norm = "norm_pre.weight" in arrays
    act = model_args.get("act_layer") or (
        "quick_gelu" if "quickgelu" in arch else "gelu_tanh" if arch in TANH_GELU else "gelu"
    )
    if act not in ("gelu", "gelu_tanh", "quick_gelu"):
        raise UserError(
            f"{where}: timm {arch}: act_layer={act!r} is not supported: gelu, "
            "gelu_tanh or quick_gelu"
        )

    width, _, patch, _ = arrays.shape("patch_embed.proj.weight")
    named = _named_heads(config["architecture"], width)
    heads = heads_of(width, model_args.get("num_heads") or named)
    depth = sum(1 for n in arrays.names() if n.endswith(".norm1.weight"))
    registers = arrays.shape("reg_token")[1] if "reg_token" in arrays else 0
    tokens = {"cls": "cls_token", "dist": "dist_token", "reg": "reg_token"}
    tokens = {ours: theirs for ours, theirs in tokens.items() if theirs in arrays}
    image_size = tuple(config["pretrained_cfg"]["input_size"][1:])
    patches = (image_size[0] // patch) * (image_size[1] // patch)
    positions = arrays.shape("pos_embed")[1]
    prefix = int("cls" in tokens) + int("dist" in tokens) + registers
    if positions not in (patches, patches + prefix):
        raise UserError(
            f"{weights}: pos_embed has {positions} positions for {patches} patches at "
            f"input_size {image_size} with patch {patch}"
        )
    has_head = "head.weight" in arrays and pool != "map"  # a map head reads attn_pool's output
    model = ViT(
        num_classes=arrays.shape("head.weight")[0] if has_head else 0,
        patch_size=patch,
        width=width,
        depth=depth,
        num_heads=heads,
        mlp_dim=arrays.shape("blocks.0.mlp.fc1.weight")[0],
        pool=POOLS[pool],
        class_token="cls" in tokens,
        distill_token="dist" in tokens,
        num_registers=registers,
        pos_embed_prefix=positions != patches,
        norm_after_pool="fc_norm.weight" in arrays,
        gelu_approximate=act == "gelu_tanh",
        activation="quick_gelu" if act == "quick_gelu" else "gelu",
        layer_norm_eps=1e-5 if pre_norm else 1e-6,  # CLIP towers: LayerNorm(eps=1e-5)
        layer_scale_init=1.0 if "blocks.0.ls1.gamma" in arrays else None,
        patch_bias="patch_embed.proj.bias" in arrays,
        norm_pre=pre_norm,
    )
    params = {
        "embedding": {"kernel": torch_patch_kernel(arrays.take("patch_embed.proj.weight"))},
        "pos_embedding": arrays.take("pos_embed"),
        **{ours: arrays.take(theirs) for ours, theirs in tokens.items()},
    }
    if model.patch_bias:
        params["embedding"]["bias"] = arrays.take("patch_embed.proj.bias")
    if pre_norm:
        params["norm_pre"] = take_torch_norm(arrays, "norm_pre")
    if pool == "map":  # read, not used (see the module docstring)
        for name in arrays.names():
            if name.startswith(("attn_pool.", "head.")):
                arrays.take(name)
    for i in range(depth):
        params[f"block{i:02d}"] = _block(arrays, f"blocks.{i}.", width, heads)
    norm = "fc_norm" if model.norm_after_pool else "norm"
    params["encoder_norm"] = take_torch_norm(arrays, norm)
    for head in ("head", "head_dist") if has_head else ():
        if f"{head}.weight" in arrays:
            params[head] = take_torch_dense(arrays, head)
    arrays.refuse_unread(f"timm {config.get('architecture', 'ViT')}", FEATURES)
    name = f"timm {config.get('architecture', '?')} ({where})"
    return checked(
        Loaded(
            model, params, timm_preprocessing(config["pretrained_cfg"]), image_size, "timm", name
        )
    )


def _block(arrays: Arrays, prefix: str, width: int, heads: int) -> dict:
    """One `blocks.i.` of timm as this project's `blockNN` parameters."""
    qkv_weight = arrays.take(prefix + "attn.qkv.weight")  # [3D, D]: rows [q; k; v], (H, hd) each
    has_bias = prefix + "attn.qkv.bias" in arrays  # qkv_bias=False: zero biases
    qkv_bias = (
        arrays.take(prefix + "attn.qkv.bias") if has_bias else np.zeros(3 * width, np.float32)
    )
    block = {
        "norm1": take_torch_norm(arrays, prefix + "norm1"),
        "norm2": take_torch_norm(arrays, prefix + "norm2"),
        "attn": {
            "qkv": {
                "kernel": qkv_weight.T.reshape(width, 3, heads, width // heads),
                "bias": qkv_bias.reshape(3, heads, width // heads),
            },
            "out": attention_out(
                arrays.take(prefix + "attn.proj.weight").T,
                arrays.take(prefix + "attn.proj.bias"),
                heads,
            ),
        },
        "mlp": {fc: take_torch_dense(arrays, f"{prefix}mlp.{fc}") for fc in ("fc1", "fc2")},
    }
    for ls in ("ls1", "ls2"):
        if f"{prefix}{ls}.gamma" in arrays:
            block[ls] = {"scale": arrays.take(f"{prefix}{ls}.gamma")}
    return block
