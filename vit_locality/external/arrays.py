"""Reading checkpoint files into NumPy without torch: safetensors and .npz.

A safetensors file is an 8-byte little-endian header length, a JSON header naming each tensor's
dtype, shape and byte range, then the raw little-endian bytes; this reader maps that onto NumPy
(bfloat16 through ml_dtypes, which JAX depends on), so no torch and no `safetensors` package is
needed. Every array comes back as float32 (the analysis runs in float32).

A file cut short (a download that stopped), a damaged header, or damaged data is one line naming
the file and what is wrong. safetensors has no checksum: damaged data is found where it decodes
to NaN or infinity (a trained ViT holds neither); a .npz (a zip) checks its CRCs.
"""

from __future__ import annotations

import json
import math
import pathlib
import struct
import zipfile
import zlib
from typing import Any

import ml_dtypes
import numpy as np

from vit_locality.errors import UserError, first_line

_STOPPED = "a download or copy that stopped?"

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    """name -> float32 array of every tensor in a .safetensors file.

    Raises:
      UserError: the file is not a safetensors file, is cut short, has a damaged header or
        damaged data (NaN or infinity), or holds a dtype NumPy cannot read.
    """
    data = path.read_bytes()
    if len(data) < 8:
        raise UserError(
            f"{path} is cut short ({_STOPPED}): {len(data)} bytes, less than the 8 bytes of a "
            "safetensors header's length"
        )
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > len(data):
        raise UserError(
            f"{path} is cut short or not a safetensors file: its first 8 bytes give a header of "
            f"{header_len} bytes, the file holds {len(data) - 8} after them"
        )
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: its safetensors header is damaged ({e})") from e
    if not isinstance(header, dict):
        raise UserError(f"{path}: its safetensors header is damaged (not a JSON object)")
    tensors = {
        name: _tensor(path, name, info) for name, info in header.items() if name != "__metadata__"
    }
    size = 8 + header_len + max((end for _, _, (_, end) in tensors.values()), default=0)
    if len(data) < size:
        raise UserError(
            f"{path} is cut short ({_STOPPED}): {len(data)} bytes of the {size} its header "
            "describes"
        )
    body = memoryview(data)[8 + header_len :]
    return finite(
        path,
        {
            name: np.frombuffer(body[start:end], dtype=dtype).reshape(shape).astype(np.float32)
            for name, (dtype, shape, (start, end)) in tensors.items()
        },
    )


def finite(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`arrays`, read from `path`; UserError naming the first that holds NaN or infinity (a
    trained ViT holds neither: damaged data, in a format without a checksum)."""
    for name, array in arrays.items():
        if not np.isfinite(array).all():
            raise UserError(
                f"{path}: tensor {name} holds NaN or infinite numbers: its data is damaged "
                "(a trained ViT holds neither)"
            )
    return arrays


def _tensor(
    path: pathlib.Path, name: str, info: Any
) -> tuple[np.dtype, tuple[int, ...], tuple[int, int]]:
    """(dtype, shape, (start, end)) of one entry of a safetensors header, checked: its byte
    range holds exactly its shape of its dtype."""
    try:
        kind, shape, (start, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        if not all(isinstance(n, int) and n >= 0 for n in (*shape, start, end)):
            raise TypeError("negative or non-integer sizes")
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(
            f"{path}: its safetensors header is damaged (tensor {name}: {first_line(e)})"
        ) from e
    if kind not in _DTYPES:
        raise UserError(f"{path}: tensor {name} has dtype {kind}; readable: {', '.join(_DTYPES)}")
    dtype = np.dtype(_DTYPES[kind]).newbyteorder("<")
    if end - start != math.prod(shape) * dtype.itemsize:
        raise UserError(
            f"{path}: its safetensors header is damaged (tensor {name}: bytes {start} to {end} "
            f"cannot hold {kind} of shape {list(shape)})"
        )
    return dtype, shape, (start, end)


def check_not_cut_short(path: pathlib.Path) -> None:
    """UserError when `path` is empty, or begins as a zip archive (a .npz, PyTorch's .pth) but
    lacks the directory a zip ends with: a file cut short."""
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty ({_STOPPED})")
    with open(path, "rb") as f:
        starts_as_zip = f.read(4) == b"PK\x03\x04"
    if starts_as_zip and not zipfile.is_zipfile(path):
        raise UserError(f"{path} is cut short ({_STOPPED}): the end of its zip archive is missing")


def read_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
    """name -> float32 array of every array in a .npz file (keys as saved, e.g.
    `Transformer/encoderblock_0/LayerNorm_0/scale`).

    Raises:
      UserError: the file is empty, cut short, damaged (a CRC or the compressed data) or not a
        .npz file.
    """
    check_not_cut_short(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: np.asarray(npz[name], np.float32) for name in npz.files}
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise UserError(f"{path} is damaged ({first_line(e)})") from e
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a readable .npz file ({first_line(e)})") from e
