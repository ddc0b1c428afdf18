"""Datasets: NumPy readers of the official files, tfds loading, the train and eval inputs (the
datasets' facts are `vit_locality.datasets`).

Only the tf.data modules (`train_input`, `augment`, `autoaugment`, `color_jitter`), the tfds
builder `tiny_imagenet` and the tfds path of `sources` import TensorFlow; everything else here
(`files`, `tiny_imagenet_files`, `eval_input`, `device_input`) runs without it. The protocol's
definition and its forms on the device are in `vit_locality.augment`, whose modules import the
tf.data forms from here only when a tf.data input is built.
"""
