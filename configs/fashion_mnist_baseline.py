"""Fashion-MNIST (28 px grayscale, a 7x7 token grid), Baseline protocol.

    python -m vit_locality.main --config=configs/fashion_mnist_baseline.py \\
        --config.data.source=files --config.data.dir=../shared/data/fashion-mnist
"""

from configs import common


def get_config(arg: str | None = None):
    return common.experiment("fashion_mnist", "baseline", arg)
