"""Load a whole split into memory as NumPy arrays, from local files or from tfds."""

from __future__ import annotations

import ml_collections
import numpy as np

from vit_locality.data import files
from vit_locality.data.datasets import DATASETS
from vit_locality.errors import DataError, first_line


def load_split(config: ml_collections.ConfigDict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 [N, H, W, C], labels int32 [N]) of `split` ("train" or "test")."""
    info = DATASETS[config.dataset]
    if config.data.source == "files":
        if config.dataset not in files.READERS:
            raise DataError(f"data.source: 'files' has no reader for {config.dataset} yet")
        if not config.data.dir:
            raise DataError(
                f"data.dir: empty; with data.source='files' it must hold {info.files_layout}"
            )
        return files.READERS[config.dataset](config.data.dir, split)
    return _load_tfds(config, split)


def _load_tfds(config: ml_collections.ConfigDict, split: str) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf
    import tensorflow_datasets as tfds

    tf.config.set_visible_devices([], "GPU")
    info = DATASETS[config.dataset]
    prepare_kwargs = {}
    if config.dataset == "tiny_imagenet":
        from vit_locality.data import tiny_imagenet  # noqa: F401  (registers the tfds builder)

        if config.data.dir:  # a tiny-imagenet-200.zip or folder there is used, not downloaded
            manual = tfds.download.DownloadConfig(manual_dir=config.data.dir)
            prepare_kwargs["download_config"] = manual
    try:
        images, labels = tfds.as_numpy(
            tfds.load(
                info.tfds_name,
                split=split,
                batch_size=-1,
                as_supervised=True,
                data_dir=config.data.dir or None,
                download_and_prepare_kwargs=prepare_kwargs,
            )
        )
    except Exception as e:  # tfds raises many kinds (download, missing builder, checksums).
        raise DataError(
            f"dataset {config.dataset}: tfds could not load it ({first_line(e)}). Offline, "
            f"use the local files: --config.data.source=files --config.data.dir=PATH where PATH "
            f"holds {info.files_layout}"
        ) from e
    return np.asarray(images, np.uint8), np.asarray(labels, np.int32)
