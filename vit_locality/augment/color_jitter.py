"""ColorJitter with torchvision's semantics: brightness, contrast and saturation factors drawn
from [1 - s, 1 + s], multiplied, in a random order.

    aug.color_jitter   the strength s in [0, 1]; 0 = off (Modern on Tiny-ImageNet: 0.4)

Per image (stream 2), after AutoAugment: `data/color_jitter.py` in tf.data, `on_device.py` on
the device. Condition key `cj` (`cj(s=0.2)` at another strength).
"""

from __future__ import annotations

from vit_locality.augment import registry
from vit_locality.config_checks import check_range


def _check(config, context: registry.CheckContext) -> None:
    check_range(config, "aug.color_jitter", 0.0, 1.0, high_open=False)


def _tf_form(config):
    from vit_locality.data.color_jitter import color_jitter

    strength = config.aug.color_jitter
    return lambda image, seed: color_jitter(image, strength, seed)


def _device_form(config):
    from vit_locality.augment.on_device import color_jitter

    strength = float(config.aug.color_jitter)
    return lambda key, image: color_jitter(image, strength, key)


COLOR_JITTER = registry.register(
    registry.Component(
        name="color_jitter",
        stage="image",
        fields={"aug.color_jitter": 0.0},
        on_fields=("aug.color_jitter",),
        stream=2,
        key="cj",
        row=20,
        title="ColorJitter",
        switch={"aug.color_jitter": 0.4},
        settings={"s": "aug.color_jitter"},
        check=_check,
        tf_form=_tf_form,
        device_form=_device_form,
    )
)
