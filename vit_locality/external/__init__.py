"""Other people's ViT checkpoints as this project's ViT, read without torch or their libraries.

`load_checkpoint(path, format)` returns a `params.Loaded`: the ViT, its parameters, the
checkpoint's preprocessing and its native input size. Formats: `timm` (a hub folder:
config.json + model.safetensors), `hf` (a Hugging Face ViT / DeiT folder: config.json with a
model_type + model.safetensors).
"""

from __future__ import annotations

import json
import pathlib

from vit_locality.errors import UserError
from vit_locality.external.hf import load_hf
from vit_locality.external.params import Loaded
from vit_locality.external.timm import load_timm

LOADERS = {"timm": load_timm, "hf": load_hf}


def detect_format(path: pathlib.Path) -> str:
    """The format of the checkpoint at `path`, from its files: a folder whose config.json names
    an `architecture` is timm's, one whose config.json names a `model_type` is Hugging Face's.

    Raises:
      UserError: nothing there, or no format recognised.
    """
    config = path / "config.json"
    if path.is_dir() and config.is_file():
        keys = json.loads(config.read_text())
        if "architecture" in keys:
            return "timm"
        if "model_type" in keys:
            return "hf"
    raise UserError(
        f"--checkpoint={path} is not a checkpoint this reads: a timm hub folder (config.json "
        "with an architecture) or a Hugging Face folder (config.json with a model_type)"
    )


def load_checkpoint(path: str | pathlib.Path, format: str | None = None) -> Loaded:
    """The checkpoint at `path` as this project's ViT; `format` (one of LOADERS) or detected."""
    path = pathlib.Path(path)
    if format is None:
        format = detect_format(path)
    if format not in LOADERS:
        raise UserError(f"--format={format!r} is not allowed: one of {', '.join(LOADERS)}")
    if not path.exists():
        raise UserError(f"--checkpoint={path} does not exist")
    return LOADERS[format](path)


__all__ = ["LOADERS", "Loaded", "detect_format", "load_checkpoint"]
