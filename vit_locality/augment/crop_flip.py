"""Pad + random crop and horizontal flip: what every protocol has (Baseline is this alone).

    aug.crop_padding   zero padding before the random crop, pixels per side (configs/common.py
                       sets 4 at 32 px and 28 px, 8 at 64 px); 0 = no crop
    aug.flip           mirror left-right with probability 1/2

Per image, first (stream 0): `data/augment.py`'s `pad_crop_flip` in tf.data, `on_device`'s on
the device (the same law; the random draws differ). Conditions do not name it.
"""

from __future__ import annotations

from vit_locality.augment import registry
from vit_locality.config_checks import check_range


def _check(config, context: registry.CheckContext) -> None:
    check_range(config, "aug.crop_padding", 0, context.info.image_size, high_open=True)


def _tf_form(config):
    from vit_locality.data.augment import pad_crop_flip

    padding, flip = config.aug.crop_padding, config.aug.flip
    return lambda image, seed: pad_crop_flip(image, seed, padding, flip)


def _device_form(config):
    from vit_locality.augment.on_device import pad_crop_flip

    padding, flip = config.aug.crop_padding, bool(config.aug.flip)
    return lambda key, image: pad_crop_flip(key, image, padding, flip)


CROP_FLIP = registry.register(
    registry.Component(
        name="crop_flip",
        stage="image",
        fields={"aug.crop_padding": 4, "aug.flip": True},
        on_fields=(),
        stream=0,
        check=_check,
        tf_form=_tf_form,
        device_form=_device_form,
    )
)
