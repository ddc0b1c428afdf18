"""A run of this project as a checkpoint for `analyze --checkpoint`: its latest saved parameters,
analysed on a folder of images instead of its dataset's test split.

The preprocessing is the run's: the images resized (shorter side, bilinear) and centre-cropped
to the dataset's size, converted to grayscale for grayscale datasets, normalised with the
dataset's mean and std, as its training and eval input normalise them.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from vit_locality.datasets import DATASETS
from vit_locality.external.params import Loaded
from vit_locality.external.preprocess import Preprocessing
from vit_locality.restore import restore_params


def load_project(workdir: pathlib.Path) -> Loaded:
    """The latest checkpoint of the run in `workdir` (a directory written by
    `python -m vit_locality.main`).

    Raises:
      UserError: no run, no checkpoint, or an unknown dataset in `workdir`.
    """
    config, model, params, step = restore_params(workdir)
    info = DATASETS[config.dataset]
    size = (info.image_size, info.image_size)
    preprocessing = Preprocessing(
        image_size=size,
        resize=info.image_size,
        interpolation="bilinear",
        crop_rounding="floor",
        mean=tuple(info.mean),
        std=tuple(info.std),
        channels=info.channels,
    )
    params = jax.tree.map(np.asarray, jax.device_get(params))
    name = f"{config.dataset} run {workdir} at step {step}"
    return Loaded(model, params, preprocessing, size, "project", name, step)
