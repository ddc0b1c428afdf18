"""What the code needs to know about each dataset: classes, image shape, normalization, files."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset.

    Attributes:
      name: the config's `dataset` value.
      num_classes: number of labels.
      image_size: side of the square images, in pixels.
      channels: 3 (RGB) or 1 (grayscale).
      mean, std: per-channel statistics of the training images, in [0, 1] units.
      tfds_name: the name passed to `tfds.load`.
      files_layout: what `--config.data.dir` must hold for the `files` source.
      has_autoaugment_policy: whether the AutoAugment CIFAR-10 policy applies (natural images).
    """

    name: str
    num_classes: int
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    tfds_name: str
    files_layout: str
    has_autoaugment_policy: bool = True


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "cifar10",
            10,
            32,
            3,
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2470, 0.2435, 0.2616),
            tfds_name="cifar10",
            files_layout="the official cifar-10-batches-bin files "
            "(data_batch_1.bin .. data_batch_5.bin, test_batch.bin)",
        ),
        DatasetInfo(
            "cifar100",
            100,
            32,
            3,
            mean=(0.5071, 0.4865, 0.4409),
            std=(0.2673, 0.2564, 0.2762),
            tfds_name="cifar100",
            files_layout="the official cifar-100-binary files (train.bin, test.bin)",
        ),
        DatasetInfo(
            "fashion_mnist",
            10,
            28,
            1,
            mean=(0.2860,),
            std=(0.3530,),
            tfds_name="fashion_mnist",
            files_layout="the official IDX files (train-images-idx3-ubyte.gz, "
            "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)",
        ),
        DatasetInfo(
            "tiny_imagenet",
            200,
            64,
            3,
            mean=(0.4802, 0.4481, 0.3975),
            std=(0.2770, 0.2691, 0.2821),
            tfds_name="tiny_imagenet",
            files_layout="the unpacked tiny-imagenet-200 directory or tiny-imagenet-200.zip",
            has_autoaugment_policy=False,  # the paper uses ColorJitter here
        ),
    )
}
