"""The train input: a tf.data pipeline whose every batch is a function of the step.

Epoch `e` visits the training set in the order of a permutation drawn from `(seed, e)`, cut into
full global batches as `vit_locality.plan` counts them (step `s` is batch `s % steps_per_epoch`
of epoch `s // steps_per_epoch`); each process takes its own contiguous rows of it. Example `j`
of global batch `s` is augmented with the stateless seed `(seed, s * global_batch_size + j)`.
Hence starting the pipeline at any step yields exactly the batches an uninterrupted run sees from
there: resume is exact.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from vit_locality.data.augment import Augment
from vit_locality.plan import steps_per_epoch

_PERMUTATION_STREAM, _AUGMENT_STREAM = 0, 1


def _stream_seed(seed: int, stream: int, counter: tf.Tensor) -> tf.Tensor:
    base = tf.constant([seed, stream], tf.int64)
    return tf.random.experimental.stateless_fold_in(base, tf.cast(counter, tf.int64))


def train_batches(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    augment: Augment,
    global_batch_size: int,
    start_step: int,
    total_steps: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Yields this process's rows of the global batches of steps `start_step .. total_steps-1`:
    {"image": uint8 [b, H, W, C], "label": int32 [b]}, b = global_batch_size / process_count."""
    tf.config.set_visible_devices([], "GPU")
    num_examples = len(images)
    spe = steps_per_epoch(num_examples, global_batch_size)
    local = global_batch_size // process_count
    first_row = process_index * local
    first_epoch = start_step // spe
    num_epochs = -(-total_steps // spe)

    images_t = tf.constant(images)
    labels_t = tf.constant(labels, tf.int32)

    def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
        keys = tf.random.stateless_uniform(
            [num_examples], _stream_seed(seed, _PERMUTATION_STREAM, epoch)
        )
        order = tf.argsort(keys)[: spe * global_batch_size]
        rows = tf.reshape(order, [spe, global_batch_size])[:, first_row : first_row + local]
        return tf.data.Dataset.from_tensor_slices(
            {"step": epoch * spe + tf.range(spe, dtype=tf.int64), "index": rows}
        )

    def load_and_augment(element: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """One host-local batch: gather its examples, augment each with its own seed."""
        position = element["step"] * global_batch_size + first_row + tf.range(local, dtype=tf.int64)
        augmented = tf.map_fn(
            lambda args: augment(args[0], _stream_seed(seed, _AUGMENT_STREAM, args[1])),
            (tf.gather(images_t, element["index"]), position),
            fn_output_signature=tf.TensorSpec(images.shape[1:], tf.uint8),
            parallel_iterations=16,
        )
        return {"image": augmented, "label": tf.gather(labels_t, element["index"])}

    ds = tf.data.Dataset.range(first_epoch, num_epochs).flat_map(epoch_batches)
    ds = ds.skip(start_step - first_epoch * spe).take(total_steps - start_step)
    # Whole batches in parallel: far less tf.data overhead than per-example elements.
    ds = ds.map(load_and_augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.as_numpy_iterator()
