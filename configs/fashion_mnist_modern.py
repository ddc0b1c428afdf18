"""Fashion-MNIST (28 px grayscale, a 7x7 token grid), Modern protocol.

AutoAugment uses the CIFAR-10 policy on the grayscale images.

    python -m vit_locality.main --config=configs/fashion_mnist_modern.py \\
        --config.data.source=files --config.data.dir=../shared/data/fashion-mnist
"""

from configs import common


def get_config(arg: str | None = None):
    return common.experiment("fashion_mnist", "modern", arg)
