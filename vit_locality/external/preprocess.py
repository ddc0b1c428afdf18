"""Images as a checkpoint's library prepares them for evaluation: resize, centre crop, normalise.

`Preprocessing` describes timm's eval transform (resize the shorter side to
`floor(size / crop_pct)`, or both sides with crop_mode "squash", then a centre crop; torchvision
rounds the crop offset) and Hugging Face's slow image processors (resize to an exact size or the
shortest edge, optional centre crop with the offset floored), both with PIL's resampling filters.
`prepare` returns uint8 images; the mean / std normalisation happens on the device
(`predict.Predictor`), as for this project's runs, so `(prepare(x) / 255 - mean) / std` is what
the library computes up to float32 rounding.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

import numpy as np
from PIL import Image

from vit_locality.errors import UserError

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How images become model inputs.

    Attributes:
      image_size: (H, W), the model input in pixels (after the crop).
      resize: (H, W) to resize to exactly, or an int, the length of the shorter side (the longer
        one keeps the aspect ratio, truncated as torchvision does).
      interpolation: a key of INTERPOLATIONS (PIL's filter).
      crop_rounding: "round" (torchvision: offset `int(round((h - H) / 2))`) or "floor"
        (Hugging Face: `(h - H) // 2`).
      mean, std: per channel, in [0, 1] units: the model sees `(x / 255 - mean) / std`.
      channels: 3 (RGB) or 1 (grayscale, PIL's "L" conversion).
    """

    image_size: tuple[int, int]
    resize: tuple[int, int] | int
    interpolation: str
    crop_rounding: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int = 3

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise UserError(
                f"the checkpoint's interpolation={self.interpolation!r} is not supported: one of "
                + ", ".join(INTERPOLATIONS)
            )

    def with_overrides(
        self,
        *,
        image_size: int | None = None,
        resize: int | None = None,
        interpolation: str | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
    ) -> Preprocessing:
        """This preprocessing with the given steps replaced (None keeps a step): a square
        `image_size` crop, the shorter side resized to `resize` (default: the crop's ratio to the
        old resize kept, so timm's crop_pct stays), the filter, the normalisation."""
        changes: dict = {}
        if image_size is not None:
            if image_size < 1:
                raise UserError(f"--image_size={image_size} is not allowed: a positive integer")
            changes["image_size"] = (image_size, image_size)
            old = self.resize if isinstance(self.resize, int) else min(self.resize)
            changes["resize"] = max(image_size, int(old * image_size / min(self.image_size)))
        if resize is not None:
            if resize < 1:
                raise UserError(f"--resize={resize} is not allowed: a positive integer")
            changes["resize"] = resize
        for name, value in (("mean", mean), ("std", std)):
            if value is not None:
                shown = ",".join(str(v) for v in value)
                if len(value) != self.channels or not all(math.isfinite(v) for v in value):
                    raise UserError(
                        f"--{name}={shown} is not allowed: {self.channels} finite numbers"
                    )
                if name == "std" and min(value) <= 0:
                    raise UserError(f"--std={shown} is not allowed: positive numbers")
                changes[name] = tuple(float(v) for v in value)
        if interpolation is not None:
            if interpolation not in INTERPOLATIONS:
                raise UserError(
                    f"--interpolation={interpolation!r} is not allowed: one of "
                    + ", ".join(INTERPOLATIONS)
                )
            changes["interpolation"] = interpolation
        return dataclasses.replace(self, **changes)

    def prepare_one(self, image: Image.Image) -> np.ndarray:
        """One PIL image (any size and mode) -> uint8 [H, W, channels]."""
        image = image.convert("RGB" if self.channels == 3 else "L")
        if isinstance(self.resize, int):
            w, h = image.size
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(self.resize * long / short)
            size = (self.resize, new_long) if w <= h else (new_long, self.resize)
        else:
            size = (self.resize[1], self.resize[0])
        if image.size != size:
            image = image.resize(size, INTERPOLATIONS[self.interpolation])
        array = np.asarray(image).reshape(image.size[1], image.size[0], self.channels)
        (top, left) = (self._offset(array.shape[i], self.image_size[i]) for i in range(2))
        return array[top : top + self.image_size[0], left : left + self.image_size[1]]

    def _offset(self, have: int, want: int) -> int:
        if have < want:
            raise UserError(f"resize gives {have} px where the crop needs {want}; raise --resize")
        return (
            int(round((have - want) / 2)) if self.crop_rounding == "round" else (have - want) // 2
        )

    def prepare(self, images: list[Image.Image]) -> np.ndarray:
        """PIL images -> uint8 [N, H, W, channels]."""
        return np.stack([self.prepare_one(image) for image in images])


def timm_preprocessing(pretrained_cfg: dict) -> Preprocessing:
    """timm's eval transform from a pretrained_cfg (`input_size`, `crop_pct`, `crop_mode`,
    `interpolation`, `mean`, `std`; timm's defaults 0.875, "center", "bicubic" where absent)."""
    _, height, width = pretrained_cfg["input_size"]
    crop_pct = pretrained_cfg.get("crop_pct") or 0.875
    mode = pretrained_cfg.get("crop_mode") or "center"
    scale = (math.floor(height / crop_pct), math.floor(width / crop_pct))
    if mode not in ("center", "squash"):
        raise UserError(f"pretrained_cfg crop_mode={mode!r} is not supported: center or squash")
    return Preprocessing(
        image_size=(height, width),
        resize=scale[0] if mode == "center" and scale[0] == scale[1] else scale,
        interpolation=pretrained_cfg.get("interpolation") or "bicubic",
        crop_rounding="round",
        mean=tuple(pretrained_cfg["mean"]),
        std=tuple(pretrained_cfg["std"]),
    )


_PIL_CODES = {int(v): k for k, v in INTERPOLATIONS.items()}


def hf_preprocessing(config: dict) -> Preprocessing:
    """A Hugging Face (slow, PIL) image processor's eval steps from preprocessor_config.json:
    `size` ({height, width}, {shortest_edge}, or a number: a square), `resample` (a PIL code),
    `do_center_crop` with `crop_size`, `image_mean`, `image_std`."""

    def size_of(entry: dict | int) -> tuple[int, int] | int:
        if isinstance(entry, int):  # the legacy form ("size": 224): a square
            return (entry, entry)
        if "height" in entry:
            return (entry["height"], entry["width"])
        return entry["shortest_edge"]

    resize = size_of(config["size"])
    crop = size_of(config["crop_size"]) if config.get("do_center_crop") else resize
    if isinstance(crop, int):
        crop = (crop, crop)
    return Preprocessing(
        image_size=crop,
        resize=resize,
        interpolation=_PIL_CODES[config.get("resample", 2)],
        crop_rounding="floor",
        mean=tuple(config["image_mean"]),
        std=tuple(config["image_std"]),
    )


def read_image_folder(folder: pathlib.Path, limit: int | None = None) -> list[Image.Image]:
    """The JPEG and PNG images in `folder` (sorted by name; the first `limit`), loaded.

    Raises:
      UserError: not a folder, no image in it, or a file that is not an image.
    """
    if not folder.is_dir():
        raise UserError(f"--images={folder} is not a directory of JPEG or PNG images")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not paths:
        raise UserError(f"--images={folder} holds no .jpg, .jpeg or .png file")
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
                images.append(image)
        except OSError as e:
            raise UserError(f"{path} is not a readable image ({e})") from e
    return images
