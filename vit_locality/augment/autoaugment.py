"""AutoAugment, the CIFAR-10 policy of the AutoAugment paper with torchvision's op semantics.

    aug.autoaugment    True: on (after crop and flip), on datasets with a policy (CIFAR, and
                       Fashion-MNIST as grayscale); False: off

Per image (stream 1): the 25 sub-policies of `autoaugment_policy`, written in TensorFlow core ops
(`data/autoaugment.py`) and in JAX (`on_device.py`), bit for bit against Pillow
(docs/augmentation.md). Condition key `aa`.
"""

from __future__ import annotations

from vit_locality.augment import registry
from vit_locality.config_checks import fail


def _check(config, context: registry.CheckContext) -> None:
    if config.aug.autoaugment and not context.info.has_autoaugment_policy:
        fail(
            "aug.autoaugment",
            True,
            f"False for {config.dataset} (no AutoAugment policy; use aug.color_jitter)",
        )


def _tf_form(config):
    from vit_locality.data.autoaugment import autoaugment

    return autoaugment


def _device_form(config):
    from vit_locality.augment.on_device import autoaugment

    return lambda key, image: autoaugment(image, key)


AUTOAUGMENT = registry.register(
    registry.Component(
        name="autoaugment",
        stage="image",
        fields={"aug.autoaugment": False},
        on_fields=("aug.autoaugment",),
        stream=1,
        key="aa",
        row=10,
        title="AutoAugment",
        switch={"aug.autoaugment": True},
        check=_check,
        tf_form=_tf_form,
        device_form=_device_form,
    )
)
