"""The locality analysis of a checkpoint from elsewhere on a folder of images or a test split.

`analyze_checkpoint` loads the checkpoint (`external.load_checkpoint`), prepares the images (a
folder of JPEG / PNG, or a test split this project reads) as its library does or as overridden,
resamples the position embedding when the analysis size is not the checkpoint's, and runs the
same jitted locality pass and writers as a run of this project
(`analysis.results.analyze_and_write`), attention rollout included: `OUT/locality.json` in the
same schema (`step` is the run's for a run of this project, else 0; `dataset` the images folder
or split) and `OUT/plots/` (the per-head figures, the ViT paper's MAD-in-pixels figure,
first-layer attention maps, rollout overlays).
"""

from __future__ import annotations

import pathlib
from typing import Any

import ml_collections
from PIL import Image

from vit_locality.analysis.attention_pass import ROLLOUT_FUSIONS
from vit_locality.analysis.results import analyze_and_write
from vit_locality.data.sources import load_split
from vit_locality.datasets import DATASETS
from vit_locality.errors import UserError
from vit_locality.external import load_checkpoint
from vit_locality.external.preprocess import read_image_folder
from vit_locality.external.resample import at_image_size
from vit_locality.parallel import sharding
from vit_locality.predict import Predictor
from vit_locality.workdir import RunDir


def dataset_images(dataset: str, data_dir: str | None, limit: int | None) -> list[Image.Image]:
    """The first `limit` test images of one of this project's datasets as PIL images, read from
    the official files in `data_dir` (`data.source=files`) or, without it, from tfds.

    Raises:
      UserError: an unknown dataset, or data that cannot be read.
    """
    if dataset not in DATASETS:
        raise UserError(f"--dataset={dataset!r} is not allowed: one of {', '.join(DATASETS)}")
    config = ml_collections.ConfigDict(
        {"dataset": dataset, "data": {"source": "files" if data_dir else "tfds", "dir": data_dir}}
    )
    pixels, _ = load_split(config, "test")
    return [Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
            for image in pixels[:limit]]  # fmt: skip


def analyze_checkpoint(
    checkpoint: str | pathlib.Path,
    images: str | pathlib.Path | None,
    out: str | pathlib.Path,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    format: str | None = None,
    gelu: str | None = None,
    arch: str | None = None,
    num_heads: int | None = None,
    num_images: int | None = None,
    batch_size: int = 32,
    rollout: str = "mean",
    **preprocessing: Any,
) -> dict[str, Any]:
    """Analyses `checkpoint` on the images in folder `images`; writes `out/locality.json` and
    `out/plots/`.

    Args:
      checkpoint: a timm hub folder or bare state dict, a Hugging Face or OpenCLIP folder, an
        OpenAI CLIP / OpenCLIP or torchvision state dict, a .npz or a run of this project (see
        `external`).
      images: a folder of JPEG / PNG images of any size, read in name order; or None and
        `dataset`.
      out: the output folder (created).
      dataset, data_dir: instead of `images`, the test split of one of this project's datasets
        (`dataset_images`).
      format: "timm", "big_vision", "hf", "clip", "torchvision", "project", or None to detect
        it.
      gelu: "exact" / "tanh" to replace the format's GELU, or None.
      arch, num_heads: timm's model name (and heads) of a bare timm state dict; num_heads also
        for a torchvision or CLIP state dict.
      num_images: the first N images of the folder or split (default: all).
      batch_size: images per jitted pass (rounded up to a multiple of the device count).
      rollout: the head fusion of attention rollout: "mean", "max" or "min".
      **preprocessing: overrides of the checkpoint's preprocessing, as
        `Preprocessing.with_overrides` takes them (image_size, resize, interpolation, mean, std).

    Returns:
      The locality.json record written.

    Raises:
      UserError: one line, before anything is written, for a bad flag, checkpoint or image.
    """
    if num_images is not None and num_images < 1:
        raise UserError(f"--num_images={num_images} is not allowed: a positive integer")
    if batch_size < 1:
        raise UserError(f"--batch_size={batch_size} is not allowed: a positive integer")
    if rollout not in ROLLOUT_FUSIONS:
        raise UserError(
            f"--rollout={rollout!r} is not allowed: one of {', '.join(ROLLOUT_FUSIONS)}"
        )
    if (images is None) == (dataset is None):
        raise UserError("--checkpoint needs --images=DIR or --dataset=NAME, one of them")
    loaded = load_checkpoint(checkpoint, format, gelu=gelu, arch=arch, num_heads=num_heads)
    prep = loaded.preprocessing.with_overrides(**preprocessing)
    loaded = at_image_size(loaded, prep.image_size)
    if images is not None:
        pictures = read_image_folder(pathlib.Path(images), num_images)
    else:
        pictures = dataset_images(dataset, data_dir, num_images)
    pixels = prep.prepare(pictures)
    out_dir = pathlib.Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out={out} cannot be created ({e.strerror})") from e
    return analyze_and_write(
        RunDir(out_dir),
        Predictor(loaded.model, prep.mean, prep.std),
        loaded.params,
        pixels,
        step=loaded.step,
        dataset=str(images) if images is not None else f"{dataset} test split",
        mesh=sharding.make_mesh(),
        batch_size=min(batch_size, len(pixels)),
        rollout=rollout,
    )
