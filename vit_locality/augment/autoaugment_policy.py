"""AutoAugment's CIFAR-10 policy as data, and every op at every magnitude as a static kernel
with its parameters, computed once in NumPy: shared by the TensorFlow ops
(`vit_locality.data.autoaugment`, on the host in tf.data) and the JAX ops (`on_device`, on the
accelerator). No TensorFlow, no JAX. The magnitude spaces (`SPACES`: AutoAugment's, which
RandAugment shares, and TrivialAugmentWide's) and the kernels with Identity also serve
RandAugment and TrivialAugmentWide (`rand_augment`).

See `vit_locality.data.autoaugment` for the semantics (torchvision's, bit for bit against Pillow).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

PolicyOp = tuple[str, float, int | None]

# torchvision AutoAugment._get_policies(AutoAugmentPolicy.CIFAR10).
CIFAR10_POLICY: tuple[tuple[PolicyOp, PolicyOp], ...] = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)

OP_NAMES: tuple[str, ...] = (
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Invert",
)
SIGNED_OPS = frozenset(OP_NAMES[:9])

# The kernels every op reduces to, in `tf.switch_case` order.
IDENTITY, REMAP, LUT, AUTOCONTRAST, EQUALIZE, COLOR, CONTRAST, SHARPNESS = range(8)
IMAGE_KERNELS = {
    "AutoContrast": AUTOCONTRAST,
    "Equalize": EQUALIZE,
    "Color": COLOR,
    "Contrast": CONTRAST,
    "Sharpness": SHARPNESS,
}


class OpSpec(NamedTuple):
    """One op at one magnitude as a kernel and its parameters (unused ones at identity values)."""

    kind: int
    source: np.ndarray  # int32 [H * W]: flat input pixel read by each output pixel; H * W = fill
    lut: np.ndarray  # uint8 [256]: value map, the same for every channel
    factor: float  # blend factor of Color, Contrast and Sharpness


def _torch_linspace(start: float, end: float, steps: int) -> np.ndarray:
    """`torch.linspace(start, end, steps)` in float32, bit for bit: the first half counts up from
    `start`, the second half down from `end` (ATen's CPU linspace kernel)."""
    start32, end32 = np.float32(start), np.float32(end)
    step = (end32 - start32) / np.float32(steps - 1)
    index = np.arange(steps)
    up = start32 + step * index.astype(np.float32)
    down = end32 - step * (steps - 1 - index).astype(np.float32)
    return np.where(index < steps // 2, up, down).astype(np.float32)


# The magnitude spaces of torchvision's `_augmentation_space`: "autoaugment" is AutoAugment's and
# RandAugment's (the same table), "wide" is TrivialAugmentWide's. Each op's range, as the end of
# `torch.linspace(0, end, num_bins)` (translations: a fraction of the image side, or pixels), and
# the Posterize divisor.
SPACES = ("autoaugment", "wide")
_RANGES = {
    "autoaugment": {"Shear": 0.3, "Translate": 150.0 / 331.0, "Rotate": 30.0, "Enhance": 0.9},
    "wide": {"Shear": 0.99, "Translate": None, "Rotate": 135.0, "Enhance": 0.99},
}
_POSTERIZE_DIVISOR = {"autoaugment": 4, "wide": 6}
_WIDE_TRANSLATE_PIXELS = 32.0


def magnitudes(
    op_name: str, num_bins: int, height: int, width: int, space: str = "autoaugment"
) -> np.ndarray:
    """float32 `[num_bins]` unsigned magnitudes of one op in one space (`_augmentation_space`);
    zeros for ops without a magnitude (AutoContrast, Equalize, Invert, Identity)."""
    if space not in SPACES:
        raise ValueError(f"unknown magnitude space {space!r}; expected one of {SPACES}")
    ranges = _RANGES[space]
    if op_name in ("ShearX", "ShearY"):
        return _torch_linspace(0.0, ranges["Shear"], num_bins)
    if op_name in ("TranslateX", "TranslateY"):
        if ranges["Translate"] is None:  # TrivialAugmentWide: 32 pixels whatever the size
            return _torch_linspace(0.0, _WIDE_TRANSLATE_PIXELS, num_bins)
        side = width if op_name == "TranslateX" else height
        return _torch_linspace(0.0, ranges["Translate"] * side, num_bins)
    if op_name == "Rotate":
        return _torch_linspace(0.0, ranges["Rotate"], num_bins)
    if op_name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return _torch_linspace(0.0, ranges["Enhance"], num_bins)
    if op_name == "Posterize":
        divisor = np.float32((num_bins - 1) / _POSTERIZE_DIVISOR[space])
        ratio = np.arange(num_bins, dtype=np.float32) / divisor
        return (8 - np.round(ratio)).astype(np.float32)
    if op_name == "Solarize":
        return _torch_linspace(255.0, 0.0, num_bins)
    return np.zeros([num_bins], np.float32)


def magnitude(
    op_name: str,
    magnitude_bin: int | None,
    num_bins: int,
    height: int,
    width: int,
    negate: bool,
    space: str = "autoaugment",
) -> float:
    """torchvision's `magnitude` argument of `_apply_op`: `float(magnitudes[bin])`, 0 for a None
    bin, negated for signed ops when `negate`."""
    if magnitude_bin is None:
        return 0.0
    magnitude = float(magnitudes(op_name, num_bins, height, width, space)[magnitude_bin])
    return -magnitude if negate and op_name in SIGNED_OPS else magnitude


def _inverse_affine(
    center: tuple[float, float], translate: tuple[int, int], shear: tuple[float, float]
) -> list[float]:
    """torchvision `_get_inverse_affine_matrix` at angle 0 and scale 1 (shear in degrees): the
    `(a, b, c, d, e, f)` that PIL's AFFINE transform takes."""
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    a = math.cos(-sy) / math.cos(sy)
    b = -math.cos(-sy) * math.tan(sx) / math.cos(sy)
    c = math.sin(-sy) / math.cos(sy)
    d = -math.sin(-sy) * math.tan(sx) / math.cos(sy) + 1.0
    matrix = [d, -b, 0.0, -c, a, 0.0]
    (cx, cy), (tx, ty) = center, translate
    matrix[2] += matrix[0] * (-cx - tx) + matrix[1] * (-cy - ty) + cx
    matrix[5] += matrix[3] * (-cx - tx) + matrix[4] * (-cy - ty) + cy
    return matrix


def _rotate_matrix(angle: float, height: int, width: int) -> list[float]:
    """The AFFINE matrix of `PIL.Image.rotate(angle)` (counter-clockwise degrees, about the
    centre (W/2, H/2), no expansion)."""
    theta = -math.radians(angle % 360.0)
    cos, sin = round(math.cos(theta), 15), round(math.sin(theta), 15)
    cx, cy = width / 2.0, height / 2.0
    return [cos, sin, cos * -cx + sin * -cy + cx, -sin, cos, -sin * -cx + cos * -cy + cy]


def _pil_affine_source(matrix: list[float], height: int, width: int) -> np.ndarray:
    """Which input pixel PIL's NEAREST affine transform reads for each output pixel.

    libImaging/Geometry.c `affine_fixed`: coefficients rounded to 16.16 fixed point, the pixel
    centre `(x + 0.5, y + 0.5)` folded into the offsets, exact integer sums, an arithmetic shift
    (floor). Translations and the identity take PIL's separate scale path, which reads the same
    pixels for whole-pixel shifts. Returns int32 `[H * W]` flat input indices, `H * W` where the
    source falls outside the image (filled with 0).
    """
    a, b, c, d, e, f = matrix

    def fixed(value: float) -> int:
        return math.floor(value * 65536.0 + 0.5)

    y, x = np.meshgrid(
        np.arange(height, dtype=np.int64), np.arange(width, dtype=np.int64), indexing="ij"
    )
    col = (fixed(c + a * 0.5 + b * 0.5) + x * fixed(a) + y * fixed(b)) >> 16
    row = (fixed(f + d * 0.5 + e * 0.5) + x * fixed(d) + y * fixed(e)) >> 16
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    return np.where(inside, row * width + col, height * width).reshape(-1).astype(np.int32)


def op_spec(op_name: str, magnitude: float, height: int, width: int) -> OpSpec:
    """The kernel and parameters of torchvision `_apply_op(op_name, magnitude)` on an image of
    size `height x width`; `magnitude` is already signed. "Identity" (RandAugment's and
    TrivialAugmentWide's) is the identity kernel."""
    values = np.arange(256)
    spec = OpSpec(IDENTITY, np.arange(height * width, dtype=np.int32), values.astype(np.uint8), 1.0)
    if op_name == "Identity":
        return spec
    matrix = None
    if op_name == "ShearX":
        matrix = _inverse_affine((0.0, 0.0), (0, 0), (math.degrees(math.atan(magnitude)), 0.0))
    elif op_name == "ShearY":
        matrix = _inverse_affine((0.0, 0.0), (0, 0), (0.0, math.degrees(math.atan(magnitude))))
    elif op_name == "TranslateX":
        matrix = _inverse_affine((width * 0.5, height * 0.5), (int(magnitude), 0), (0.0, 0.0))
    elif op_name == "TranslateY":
        matrix = _inverse_affine((width * 0.5, height * 0.5), (0, int(magnitude)), (0.0, 0.0))
    elif op_name == "Rotate":
        matrix = _rotate_matrix(magnitude, height, width)
    if matrix is not None:
        return spec._replace(kind=REMAP, source=_pil_affine_source(matrix, height, width))
    lut = None
    if op_name == "Brightness":  # PIL blend with black, in float32, clipped and truncated
        scaled = np.float32(1.0 + magnitude) * values.astype(np.float32)
        lut = np.floor(np.clip(scaled, 0.0, 255.0))
    elif op_name == "Posterize":
        lut = values & (256 - (1 << (8 - int(magnitude))))
    elif op_name == "Solarize":
        lut = np.where(values >= magnitude, 255 - values, values)
    elif op_name == "Invert":
        lut = 255 - values
    if lut is not None:
        return spec._replace(kind=LUT, lut=lut.astype(np.uint8))
    return spec._replace(kind=IMAGE_KERNELS[op_name], factor=1.0 + magnitude)


@functools.cache
def policy_specs(height: int, width: int) -> tuple[OpSpec, ...]:
    """`OpSpec`s of every (sub-policy, slot, negate) at `(policy * 2 + slot) * 2 + negate`."""
    return tuple(
        op_spec(name, magnitude(name, magnitude_bin, 10, height, width, negate), height, width)
        for pair in CIFAR10_POLICY
        for name, _, magnitude_bin in pair
        for negate in (False, True)
    )


def policy_probabilities() -> np.ndarray:
    """float32 `[25, 2]`: the probability of each sub-policy's two ops."""
    return np.array([[op[1] for op in pair] for pair in CIFAR10_POLICY], np.float32)
