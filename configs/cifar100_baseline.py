"""CIFAR-100, Baseline protocol (pad-4 random crop + flip), ViT 192x9 with patch 4.

The paper reports a first-layer minimum MAD of 0.316 for this protocol.

    python -m vit_locality.main --config=configs/cifar100_baseline.py
"""

from configs import common


def get_config(arg: str | None = None):
    return common.experiment("cifar100", "baseline", arg)
