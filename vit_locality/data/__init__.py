"""Datasets: metadata, NumPy readers of the official files, tfds loading, tf.data pipelines.

Only the tf.data modules (`train_input`, `augment`, `autoaugment`, `color_jitter`), the tfds
builder `tiny_imagenet` and the tfds path of `sources` import TensorFlow; everything else here
(`files`, `tiny_imagenet_files`, `eval_input`, `device_input`) runs without it. The protocol's
definition and its forms on the device are in `vit_locality.augment`, which never imports it.
"""
