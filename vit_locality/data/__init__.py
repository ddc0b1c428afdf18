"""Datasets: metadata, NumPy readers of the official files, tfds loading, tf.data pipelines.

Only the tf.data modules (`train_input`, `augment`, `autoaugment`, `color_jitter`) and the tfds
path of `sources` import TensorFlow; everything else here runs without it.
"""
