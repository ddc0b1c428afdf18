"""CIFAR-10, Baseline protocol (pad-4 random crop + flip), ViT 192x9 with patch 4.

    python -m vit_locality.main --config=configs/cifar10_baseline.py
    python -m vit_locality.main --config=configs/cifar10_baseline.py:smoke \\
        --config.data.source=files --config.data.dir=../shared/data/cifar10-sample
"""

from configs import common


def get_config(arg: str | None = None):
    return common.experiment("cifar10", "baseline", arg)
