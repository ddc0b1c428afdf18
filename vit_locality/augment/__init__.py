"""The training protocol: what each component is (`protocol`), AutoAugment's policy as data
(`autoaugment_policy`), and the components that run on the accelerator: AutoAugment and
ColorJitter for the input on the device (`on_device`), CutMix / Mixup / label smoothing
(`mixing`) and random erasing (`erasing`) in the train step. Their tf.data forms live in
`vit_locality.data` (`augment`, `autoaugment`, `color_jitter`), with TensorFlow; nothing here
imports it. docs/augmentation.md states the semantics.
"""
