"""The tfds builder `tiny_imagenet` (the tfds catalog lacks Tiny-ImageNet); it needs TensorFlow.

Importing this module registers it, after which `tfds.load("tiny_imagenet")` downloads the
official zip when online, or builds offline from a manual dir holding `tiny-imagenet-200.zip` or
the unpacked `tiny-imagenet-200` folder. Images and labels are those of
`vit_locality.data.tiny_imagenet_files.read_tiny_imagenet` (see there for the conventions).
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import tensorflow_datasets as tfds

from vit_locality.data.tiny_imagenet_files import (
    IMAGE_SHAPE,
    URL,
    decode_image,
    index_split,
    locate,
    open_source,
    sorted_wnids,
)


class TinyImagenet(tfds.core.GeneratorBasedBuilder):
    """Tiny-ImageNet-200 as the tfds dataset `tiny_imagenet`: splits train and test (the
    official val images). Images are stored as PNG, so `tfds.load` returns exactly the
    pixels of `read_tiny_imagenet`.

    The class names are the data's sorted wnids, read when the dataset is prepared (200 for
    the official files; fewer in a miniature copy of the layout).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: train and test (= official val) splits."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Optional: put tiny-imagenet-200.zip (from {URL}) or the tiny-imagenet-200 folder "
        "it unpacks to in manual_dir; without them the zip is downloaded."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Tiny-ImageNet: 200 ImageNet classes at 64x64 (Stanford CS231n); "
            "the test split is the official validation set.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=IMAGE_SHAPE),
                    "label": tfds.features.ClassLabel(),  # names set in _split_generators
                }
            ),
            supervised_keys=("image", "label"),
            homepage="http://cs231n.stanford.edu/",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        try:
            manual = locate(pathlib.Path(dl_manager.manual_dir))
        except AssertionError:  # tfds: the manual dir does not exist or is empty
            manual = None
        data = manual or dl_manager.download(URL)
        with open_source(data) as source:
            self.info.features["label"].names = sorted_wnids(source)
        return {split: self._generate_examples(data, split) for split in ("train", "test")}

    def _generate_examples(self, data_dir: pathlib.Path, split: str) -> Iterator[tuple]:
        """(key, {"image": uint8 [64, 64, 3], "label": int}), one image at a time."""
        with open_source(data_dir) as source:
            paths, labels = index_split(source, split, sorted_wnids(source))
            for path, label in zip(paths, labels, strict=True):
                yield path, {"image": decode_image(source, path), "label": int(label)}
