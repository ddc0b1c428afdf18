"""Tiny-ImageNet (64 px, 200 classes), Modern protocol: Baseline + ColorJitter 0.4 + CutMix +
label smoothing 0.1 (ColorJitter takes AutoAugment's place, as in the paper).

Patch 8 and crop padding 8 (common.py scales both with the image size) keep the 8x8 token
grid and the padding-to-size ratio of the 32 px configs (the project's defaults; the paper does
not state them).

    python -m vit_locality.main --config=configs/tiny_imagenet_modern.py \\
        --config.data.source=files --config.data.dir=PATH/TO/tiny-imagenet-200
"""

from configs import common


def get_config(arg: str | None = None):
    return common.experiment("tiny_imagenet", "modern", arg)
