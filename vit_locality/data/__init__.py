"""Datasets: metadata, NumPy readers of the official files, tfds loading, tf.data pipelines.

Only the tf.data modules (`train_input`, `augment`, `autoaugment`, `color_jitter`), the tfds
builder `tiny_imagenet` and the tfds path of `sources` import TensorFlow; everything else here
(`files`, `tiny_imagenet_files`, `eval_input`, `device_input`, `device_augment`,
`autoaugment_policy`) runs without it.
"""
