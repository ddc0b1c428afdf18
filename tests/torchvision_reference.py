"""Reference implementations written from torchvision's source (autoaugment.py `_apply_op`,
`_augmentation_space`; functional.py `affine`, `_get_inverse_affine_matrix`; _functional_pil.py),
calling Pillow directly and sharing no code with `vit_locality`: what the AutoAugment,
RandAugment and TrivialAugmentWide tests compare the tf.data and JAX forms against."""

import math

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

NUM_BINS = 10


def read_cifar(directory, count: int) -> np.ndarray:
    """The first `count` test images, uint8 [N, 32, 32, 3] (records: label byte, R, G, B planes)."""
    raw = np.fromfile(directory / "test_batch.bin", np.uint8, count=count * 3073)
    return raw.reshape(count, 3073)[:, 1:].reshape(count, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def pil_images(directory, count: int = 3) -> list[Image.Image]:
    """The first `count` real RGB test images and the first of them in grayscale ("L")."""
    rgb = [Image.fromarray(image) for image in read_cifar(directory, count)]
    return rgb + [rgb[0].convert("L")]


def as_hwc(pil: Image.Image) -> np.ndarray:
    array = np.asarray(pil)
    return array[:, :, None] if array.ndim == 2 else array


def linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace in float32 (ATen's CPU kernel: from `start` for the first half, from `end`
    for the second half)."""
    start, end = np.float32(start), np.float32(end)
    step = np.float32((end - start) / np.float32(steps - 1))
    return np.array(
        [
            start + step * np.float32(i)
            if i < steps // 2
            else end - step * np.float32(steps - 1 - i)
            for i in range(steps)
        ],
        np.float32,
    )


def augmentation_space(num_bins: int, size: tuple[int, int], space: str) -> dict:
    """`{op: (magnitudes, signed)}` of torchvision's `_augmentation_space(num_bins, ...)`:
    AutoAugment's and RandAugment's ("autoaugment"; RandAugment adds Identity and drops Invert,
    which take no magnitude) or TrivialAugmentWide's ("wide")."""
    height, width = size
    if space == "wide":
        shear, translate_x, translate_y, rotate, enhance, posterize = (
            0.99,
            32.0,
            32.0,
            135.0,
            0.99,
            6,
        )
    else:
        shear, rotate, enhance, posterize = 0.3, 30.0, 0.9, 4
        translate_x, translate_y = 150.0 / 331.0 * width, 150.0 / 331.0 * height
    posterize_bits = 8 - np.round(
        np.arange(num_bins).astype(np.float32) / np.float32((num_bins - 1) / posterize)
    )
    return {
        "ShearX": (linspace_f32(0.0, shear, num_bins), True),
        "ShearY": (linspace_f32(0.0, shear, num_bins), True),
        "TranslateX": (linspace_f32(0.0, translate_x, num_bins), True),
        "TranslateY": (linspace_f32(0.0, translate_y, num_bins), True),
        "Rotate": (linspace_f32(0.0, rotate, num_bins), True),
        "Brightness": (linspace_f32(0.0, enhance, num_bins), True),
        "Color": (linspace_f32(0.0, enhance, num_bins), True),
        "Contrast": (linspace_f32(0.0, enhance, num_bins), True),
        "Sharpness": (linspace_f32(0.0, enhance, num_bins), True),
        "Posterize": (posterize_bits.astype(np.float32), False),
        "Solarize": (linspace_f32(255.0, 0.0, num_bins), False),
    }


def torchvision_magnitude(
    op: str,
    bin_: int,
    size: tuple[int, int],
    negate: bool,
    num_bins: int = NUM_BINS,
    space: str = "autoaugment",
) -> float:
    """`float(magnitudes[bin])` of `augmentation_space(num_bins, (height, width))` (AutoAugment's
    by default), negated for signed ops when asked; 0 for ops without a magnitude."""
    table = augmentation_space(num_bins, size, space)
    if op not in table:
        return 0.0
    values, signed = table[op]
    magnitude = float(values[bin_])
    return -magnitude if signed and negate else magnitude


def inverse_affine(center, angle, translate, shear) -> list[float]:
    """torchvision.transforms.functional._get_inverse_affine_matrix with scale 1."""
    rot = math.radians(angle)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    matrix = [d, -b, 0.0, -c, a, 0.0]
    matrix[2] += matrix[0] * (-cx - tx) + matrix[1] * (-cy - ty)
    matrix[5] += matrix[3] * (-cx - tx) + matrix[4] * (-cy - ty)
    matrix[2] += cx
    matrix[5] += cy
    return matrix


def pillow_op(pil: Image.Image, op: str, magnitude: float) -> Image.Image:
    """torchvision `_apply_op(img, op, magnitude, NEAREST, fill=None)` on a PIL image."""
    width, height = pil.size

    def affine(center, translate, shear):
        matrix = inverse_affine(center, 0.0, translate, shear)
        return pil.transform(
            pil.size, Image.Transform.AFFINE, matrix, Image.Resampling.NEAREST, fillcolor=0
        )

    if op == "ShearX":
        return affine([0, 0], [0, 0], [math.degrees(math.atan(magnitude)), 0.0])
    if op == "ShearY":
        return affine([0, 0], [0, 0], [0.0, math.degrees(math.atan(magnitude))])
    if op == "TranslateX":
        return affine([width * 0.5, height * 0.5], [int(magnitude), 0], [0.0, 0.0])
    if op == "TranslateY":
        return affine([width * 0.5, height * 0.5], [0, int(magnitude)], [0.0, 0.0])
    if op == "Rotate":
        return pil.rotate(magnitude, Image.Resampling.NEAREST, expand=False, fillcolor=0)
    if op == "Identity":
        return pil.copy()
    enhancers = {
        "Brightness": ImageEnhance.Brightness,
        "Color": ImageEnhance.Color,
        "Contrast": ImageEnhance.Contrast,
        "Sharpness": ImageEnhance.Sharpness,
    }
    if op in enhancers:
        return enhancers[op](pil).enhance(1.0 + magnitude)
    if op == "Posterize":
        return ImageOps.posterize(pil, int(magnitude))
    if op == "Solarize":
        return ImageOps.solarize(pil, magnitude)
    return {"AutoContrast": ImageOps.autocontrast, "Equalize": ImageOps.equalize}.get(
        op, ImageOps.invert
    )(pil)
