"""CIFAR-10, Modern protocol: Baseline + AutoAugment + CutMix + label smoothing 0.1.

    python -m vit_locality.main --config=configs/cifar10_modern.py
    python -m vit_locality.main --config=configs/cifar10_modern.py:smoke \\
        --config.data.source=files --config.data.dir=../shared/data/cifar10-sample
"""

from configs import common


def get_config(arg: str | None = None):
    return common.experiment("cifar10", "modern", arg)
