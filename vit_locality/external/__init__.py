"""Other people's ViT checkpoints as this project's ViT, read without torch or their libraries.

`load_checkpoint(path, format)` returns a `params.Loaded`: the ViT, its parameters, the
checkpoint's preprocessing and its native input size. Formats: `timm` (a hub folder:
config.json + model.safetensors), `hf` (a Hugging Face ViT / DeiT folder: config.json with a
model_type + model.safetensors), `big_vision` (a .npz of google-research/vision_transformer or
big_vision, scanned or not), `project` (a run directory of this project: its latest checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from vit_locality.errors import UserError
from vit_locality.external.hf import load_hf
from vit_locality.external.npz import load_npz
from vit_locality.external.params import Loaded
from vit_locality.external.project import load_project
from vit_locality.external.timm import load_timm

LOADERS = {"timm": load_timm, "big_vision": load_npz, "hf": load_hf, "project": load_project}
GELUS = {"exact": False, "tanh": True}  # -> ViT.gelu_approximate


def detect_format(path: pathlib.Path) -> str:
    """The format of the checkpoint at `path`, from its files: a folder whose config.json names
    an `architecture` is timm's, one whose config.json names a `model_type` is Hugging Face's, a
    .npz file is big_vision's (or the original ViT code's), a run directory of this project
    (config.json with `dataset` and `model`) is `project`, a bare `.safetensors` or `.pth` state
    dict is timm's.

    Raises:
      UserError: nothing there, or no format recognised.
    """
    if path.suffix == ".npz" and path.is_file():
        return "big_vision"
    if path.suffix in (".safetensors", ".pth") and path.is_file():
        return "timm"  # a bare state dict
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
        "with an architecture), a Hugging Face folder (config.json with a model_type), a .npz "
        "or a run of this project"
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
      gelu: "exact" or "tanh" replaces the GELU the format implies (e.g. "exact" for a .npz
        whose weights were trained in PyTorch); None keeps it.
      arch: timm's model name of a bare timm state dict (`.safetensors`, `.pth`).
      num_heads: a bare timm state dict's heads, when its name does not say them.

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
    elif arch is not None or num_heads is not None:
        raise UserError(
            f"--arch and --num_heads are not allowed with --format={format}: they name a bare "
            "timm state dict"
        )
    else:
        loaded = LOADERS[format](path)
    if gelu is not None:
        loaded = dataclasses.replace(loaded, model=loaded.model.clone(gelu_approximate=GELUS[gelu]))
    return loaded


__all__ = ["GELUS", "LOADERS", "Loaded", "detect_format", "load_checkpoint"]
