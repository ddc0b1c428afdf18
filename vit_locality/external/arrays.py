"""Reading checkpoint files into NumPy without torch: safetensors and .npz.

A safetensors file is an 8-byte little-endian header length, a JSON header naming each tensor's
dtype, shape and byte range, then the raw little-endian bytes; this reader maps that onto NumPy
(bfloat16 through ml_dtypes, which JAX depends on), so no torch and no `safetensors` package is
needed. Every array comes back as float32 (the analysis runs in float32).
"""

from __future__ import annotations

import json
import pathlib
import struct

import ml_dtypes
import numpy as np

from vit_locality.errors import UserError

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
      UserError: the file is not a safetensors file or holds a dtype NumPy cannot read.
    """
    data = path.read_bytes()
    try:
        (header_len,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + header_len])
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not a safetensors file ({e})") from e
    body = memoryview(data)[8 + header_len :]
    arrays = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _DTYPES:
            raise UserError(
                f"{path}: tensor {name} has dtype {info['dtype']}; readable: {', '.join(_DTYPES)}"
            )
        start, end = info["data_offsets"]
        array = np.frombuffer(
            body[start:end], dtype=np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        )
        arrays[name] = array.reshape(info["shape"]).astype(np.float32)
    return arrays


def read_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
    """name -> float32 array of every array in a .npz file (keys as saved, e.g.
    `Transformer/encoderblock_0/LayerNorm_0/scale`)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: np.asarray(npz[name], np.float32) for name in npz.files}
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a readable .npz file ({e})") from e
