"""Other people's ViT checkpoints as this project's ViT, read without torch or their libraries.

`load_checkpoint(path, format)` returns a `params.Loaded`: the ViT, its parameters, the
checkpoint's preprocessing and its native input size. Formats: `timm` (a hub folder:
config.json + model.safetensors; ViT, DeiT, CLIP and SigLIP towers), `hf` (a Hugging Face ViT,
DeiT, CLIP, SigLIP or DINOv2 folder: config.json with a model_type + model.safetensors),
`big_vision` (a .npz of google-research/vision_transformer or big_vision, scanned or not),
`clip` (OpenAI CLIP's / OpenCLIP's own layout: an OpenCLIP hub folder or a state dict),
`torchvision` (a torchvision ViT's state dict), `project` (a run directory of this project: its
latest checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from vit_locality.errors import UserError
from vit_locality.external.clip import CONFIG as OPEN_CLIP_CONFIG
from vit_locality.external.clip import is_clip, load_clip
from vit_locality.external.hf import load_hf
from vit_locality.external.npz import load_npz
from vit_locality.external.params import Loaded, state_dict_names
from vit_locality.external.project import load_project
from vit_locality.external.timm import load_timm
from vit_locality.external.torchvision_vit import is_torchvision, load_torchvision

LOADERS = {
    "timm": load_timm,
    "big_vision": load_npz,
    "hf": load_hf,
    "clip": load_clip,
    "torchvision": load_torchvision,
    "project": load_project,
}
GELUS = {  # -> ViT (gelu_approximate, activation)
    "exact": (False, "gelu"),
    "tanh": (True, "gelu"),
    "quick": (False, "quick_gelu"),
}
STATE_DICTS = (".safetensors", ".pth", ".pt", ".bin")


def detect_format(path: pathlib.Path) -> str:
    """The format of the checkpoint at `path`, from its files: a folder whose config.json names
    an `architecture` is timm's, one whose config.json names a `model_type` is Hugging Face's, a
    folder with open_clip_config.json is OpenCLIP's (`clip`), a .npz file is big_vision's (or the
    original ViT code's), a run directory of this project (config.json with `dataset` and
    `model`) is `project`; a bare state dict (`.safetensors`, `.pth`, `.pt`, `.bin`) is told by
    its array names (read from the safetensors header, or with torch): OpenAI CLIP / OpenCLIP
    (`visual.conv1`), torchvision (`conv_proj`), else timm's.

    Raises:
      UserError: nothing there, or no format recognised.
    """
    if path.suffix == ".npz" and path.is_file():
        return "big_vision"
    if path.suffix in STATE_DICTS and path.is_file():
        names = state_dict_names(path)  # None: unreadable here; the loader says why
        if names and is_clip(names):
            return "clip"
        if names and is_torchvision(names):
            return "torchvision"
        return "timm"  # a bare state dict
    if path.is_dir() and (path / OPEN_CLIP_CONFIG).is_file():
        return "clip"
    config = path / "config.json"
    if path.is_dir() and config.is_file():
        keys = json.loads(config.read_text())
        if "architecture" in keys:
            return "timm"
        if "model_type" in keys:
            return "hf"
        if "dataset" in keys and "model" in keys:
            return "project"
    raise UserError(
        f"--checkpoint={path} is not a checkpoint this reads: a timm hub folder (config.json "
        "with an architecture), a Hugging Face folder (config.json with a model_type), an "
        "OpenCLIP folder (open_clip_config.json), a .npz, a state dict (.safetensors, .pth, "
        ".pt, .bin) or a run of this project"
    )


def load_checkpoint(
    path: str | pathlib.Path,
    format: str | None = None,
    *,
    gelu: str | None = None,
    arch: str | None = None,
    num_heads: int | None = None,
) -> Loaded:
    """The checkpoint at `path` as this project's ViT.

    Args:
      path: a folder (timm, hf) or a file (.npz).
      format: one of LOADERS; None: `detect_format`.
      gelu: "exact", "tanh" or "quick" (QuickGELU) replaces the activation the format implies
        (e.g. "exact" for a .npz whose weights were trained in PyTorch, or for an OpenCLIP state
        dict of a GELU model); None keeps it.
      arch: timm's model name of a bare timm state dict (`.safetensors`, `.pth`).
      num_heads: the heads of a bare timm, torchvision or CLIP state dict, when its name or
        width does not say them.

    Raises:
      UserError: one line naming the field and what is allowed.
    """
    path = pathlib.Path(path)
    if format is not None and format not in LOADERS:
        raise UserError(f"--format={format!r} is not allowed: one of {', '.join(LOADERS)}")
    if gelu is not None and gelu not in GELUS:
        raise UserError(f"--gelu={gelu!r} is not allowed: one of {', '.join(GELUS)}")
    if not path.exists():
        raise UserError(f"--checkpoint={path} does not exist")
    format = format or detect_format(path)
    if format == "timm":
        loaded = load_timm(path, arch, num_heads)
    elif arch is not None:
        raise UserError(
            f"--arch is not allowed with --format={format}: it names a bare timm state dict"
        )
    elif format in ("clip", "torchvision"):
        loaded = LOADERS[format](path, num_heads)
    elif num_heads is not None:
        raise UserError(
            f"--num_heads is not allowed with --format={format}: it is for bare "
            "timm, torchvision and CLIP state dicts"
        )
    else:
        loaded = LOADERS[format](path)
    if gelu is not None:
        approximate, activation = GELUS[gelu]
        model = loaded.model.clone(gelu_approximate=approximate, activation=activation)
        loaded = dataclasses.replace(loaded, model=model)
    return loaded


__all__ = ["GELUS", "LOADERS", "Loaded", "detect_format", "load_checkpoint"]
