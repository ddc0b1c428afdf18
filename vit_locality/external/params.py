"""What every checkpoint loader shares: the arrays it has not read yet, the conversions from
PyTorch and JAX layouts into this project's ViT parameters, and the loaded result.

This project's ViT parameters (see `models/vit.py`), for width D, H heads of hd = D / H, MLP
size M and patch P: `embedding/kernel` [P, P, C, D] (HWIO), `pos_embedding` [1, T', D],
`cls`/`dist` [1, 1, D], `reg` [1, R, D], per block `blockNN/{norm1, norm2}/{scale, bias}` [D],
`attn/qkv/kernel` [D, 3, H, hd] and `bias` [3, H, hd], `attn/out/kernel` [H, hd, D],
`mlp/fc1/kernel` [D, M], `mlp/fc2/kernel` [M, D], `ls1/scale`, `ls2/scale` [D], then
`encoder_norm`, `head` (and `head_dist`) with kernels [D, classes].
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import struct
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vit_locality.errors import UserError, first_line
from vit_locality.external.arrays import check_not_cut_short, finite, read_safetensors
from vit_locality.external.preprocess import Preprocessing
from vit_locality.models import ViT


class Arrays:
    """A checkpoint's arrays by name; `take` marks one read, `unread` lists the others, so a
    loader can refuse a checkpoint holding weights it does not understand."""

    def __init__(self, arrays: dict[str, np.ndarray], source: str, family: str | None = None):
        self._arrays = arrays
        self._read: set[str] = set()
        self.source = source
        self.family = family  # e.g. "timm ViT": a missing array is then a variant not read

    def __contains__(self, name: str) -> bool:
        return name in self._arrays

    def names(self) -> list[str]:
        return list(self._arrays)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.require(name).shape

    def require(self, name: str) -> np.ndarray:
        if name not in self._arrays and self.family:
            raise UserError(
                f"{self.source}: a {self.family} variant this reader does not support (it has "
                f"no {name})"
            )
        if name not in self._arrays:
            raise UserError(f"{self.source} has no array {name}: not a checkpoint of this format")
        return self._arrays[name]

    def take(self, name: str) -> np.ndarray:
        """The array `name`, marked as read."""
        array = self.require(name)
        self._read.add(name)
        return array

    def refuse_unread(self, what: str, features: dict[str, str] | None = None) -> None:
        """UserError naming the arrays nobody took; where one holds a key of `features` (a part
        of a name -> the feature such arrays belong to), the error names the feature instead:
        "`what`: needs `feature` support"."""
        unread = [n for n in self._arrays if n not in self._read]
        needed = [f for part, f in (features or {}).items() if any(part in n for n in unread)]
        if needed:
            raise UserError(
                f"{self.source}: {what}: needs {' and '.join(needed)} support, which this ViT "
                "does not have"
            )
        if unread:
            shown = ", ".join(sorted(unread)[:6]) + (", ..." if len(unread) > 6 else "")
            raise UserError(f"{self.source}: {what} with weights this ViT does not have: {shown}")


def read_state_dict(path: pathlib.Path) -> dict[str, np.ndarray]:
    """name -> float32 array of a state dict file: `.safetensors` without torch, else with it
    (`read_torch`)."""
    return read_safetensors(path) if path.suffix == ".safetensors" else read_torch(path)


def read_torch(path: pathlib.Path) -> dict[str, np.ndarray]:
    """A torch state dict (`.pt`, `.pth`, `.bin`; unwrapped from "model" / "state_dict"), or
    the parameters of a TorchScript archive (OpenAI's `.pt` files: `torch.jit.load`)."""
    check_not_cut_short(path)
    try:
        import torch
    except ImportError:
        raise UserError(
            f"--checkpoint={path}: reading a {path.suffix} needs PyTorch (pip install torch), "
            "or save the state dict as .safetensors"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # OpenAI's TorchScript archives are not plain state dicts
        try:
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception:
            raise UserError(
                f"{path} is damaged or not a state dict: torch.load says {first_line(e)}"
            ) from e
    for key in ("model", "state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
    return finite(path, {name: tensor.float().numpy() for name, tensor in state.items()})


def state_dict_names(path: pathlib.Path) -> list[str] | None:
    """The array names of a state dict file without reading its arrays: a `.safetensors`
    header, or (with torch, memory-mapped) a torch file's keys; None where they cannot be read
    here (the loader then says why)."""
    try:
        if path.suffix == ".safetensors":
            with path.open("rb") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                if length > 100_000_000:
                    return None
                return [n for n in json.loads(f.read(length)) if n != "__metadata__"]
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
        return list(state)
    except Exception:  # not a state dict, no torch, damaged: the loader's error is the one line
        return _pickled_names(path)


def _pickled_names(path: pathlib.Path) -> list[str] | None:
    """Without torch (or for a TorchScript archive): the markers of the CLIP and torchvision
    layouts found in the pickles of a torch zip archive, as names the format checks know."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = b"".join(archive.read(n) for n in archive.namelist() if n.endswith(".pkl"))
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    markers = {b"class_embedding": "visual.conv1.weight", b"conv_proj": "conv_proj.weight"}
    return [name for marker, name in markers.items() if marker in pickled] or None


def layer_norm(scale: np.ndarray, bias: np.ndarray) -> dict[str, np.ndarray]:
    return {"scale": scale, "bias": bias}


def torch_dense(weight: np.ndarray, bias: np.ndarray) -> dict[str, np.ndarray]:
    """A PyTorch Linear (weight [out, in]) as a Flax Dense (kernel [in, out])."""
    return {"kernel": weight.T, "bias": bias}


def take_torch_dense(arrays: Arrays, name: str) -> dict[str, np.ndarray]:
    """The PyTorch Linear `name` (`name.weight`, `name.bias`) of `arrays` as a Flax Dense."""
    return torch_dense(arrays.take(f"{name}.weight"), arrays.take(f"{name}.bias"))


def take_torch_norm(arrays: Arrays, name: str) -> dict[str, np.ndarray]:
    """The PyTorch LayerNorm `name` (`name.weight`, `name.bias`) of `arrays` as a Flax one."""
    return layer_norm(arrays.take(f"{name}.weight"), arrays.take(f"{name}.bias"))


def torch_patch_kernel(weight: np.ndarray) -> np.ndarray:
    """A PyTorch Conv2d weight [D, C, P, P] as a Flax Conv kernel [P, P, C, D]."""
    return weight.transpose(2, 3, 1, 0)


def qkv(kernels: list[np.ndarray], biases: list[np.ndarray], heads: int) -> dict[str, np.ndarray]:
    """The fused qkv projection from the query, key and value ones (kernels [D, D'] with the
    output split by head as (H, hd), or already [D, H, hd]; biases [D'] or [H, hd])."""
    width = kernels[0].shape[0]
    kernel = np.stack([k.reshape(width, heads, -1) for k in kernels], axis=1)
    return {"kernel": kernel, "bias": np.stack([b.reshape(heads, -1) for b in biases])}


def attention_out(kernel: np.ndarray, bias: np.ndarray, heads: int) -> dict[str, np.ndarray]:
    """The output projection from a kernel [H * hd, D] (or [H, hd, D]) and bias [D]."""
    return {"kernel": kernel.reshape(heads, -1, kernel.shape[-1]), "bias": bias}


def read_config(folder: pathlib.Path, what: str) -> dict:
    """`folder/config.json`; a UserError when `folder` is not a folder holding one."""
    path = folder / "config.json"
    if not path.is_file():
        raise UserError(f"--checkpoint={folder} is not {what} folder: it has no config.json")
    return json.loads(path.read_text())


def heads_of(width: int, hinted: int | None) -> int:
    """The head count: `hinted` when the checkpoint says it, else width / 64 (the head size of
    every standard ViT from Ti to L), checked to divide."""
    heads = hinted if hinted else max(width // 64, 1)
    if width % heads:
        raise UserError(f"width {width} is not divisible by {heads} heads")
    return heads


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A checkpoint as this project's ViT.

    Attributes:
      model: the ViT (float32).
      params: its parameter pytree (NumPy float32 arrays).
      preprocessing: how the checkpoint's library feeds it images.
      image_size: (H, W) in pixels, the input size the position embedding was trained at.
      format: "timm", "big_vision", "hf" or "project".
      name: what the checkpoint calls itself (architecture or model type and path).
      step: the training step of the parameters where the checkpoint records it (a run of this
        project), else 0.
    """

    model: ViT
    params: dict[str, Any]
    preprocessing: Preprocessing
    image_size: tuple[int, int]
    format: str
    name: str
    step: int = 0


def checked(loaded: Loaded) -> Loaded:
    """`loaded`, after checking that its parameters have exactly the model's structure and shapes
    at its image size; a UserError names the first difference."""
    images = jax.ShapeDtypeStruct((1, *loaded.image_size, 3), jnp.float32)
    expected = jax.eval_shape(loaded.model.init, jax.random.key(0), images)["params"]
    want = {
        jax.tree_util.keystr(p): s.shape for p, s in jax.tree_util.tree_leaves_with_path(expected)
    }
    got = {
        jax.tree_util.keystr(p): np.shape(a)
        for p, a in jax.tree_util.tree_leaves_with_path(loaded.params)
    }
    for name in sorted(set(want) | set(got)):
        if want.get(name) != got.get(name):
            raise UserError(
                f"{loaded.name}: parameter {name} has shape {got.get(name)} where the ViT it "
                f"describes needs {want.get(name)}"
            )
    return loaded
