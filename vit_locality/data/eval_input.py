"""The eval input: every test example exactly once, in order, the last batch padded and masked.

Plain NumPy (no TensorFlow): the split is padded to a whole number of global batches; each
process takes its own contiguous rows of every global batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def eval_batches(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    global_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Yields {"image": uint8 [b, H, W, C], "label": int32 [b], "mask": bool [b]} with
    b = global_batch_size / process_count; padding rows are zeros with mask False."""
    local = global_batch_size // process_count
    first_row = process_index * local
    for start in range(0, len(images), global_batch_size):
        rows = np.arange(start + first_row, start + first_row + local)
        mask = rows < len(images)
        rows = np.where(mask, rows, 0)
        yield {
            "image": np.where(mask[:, None, None, None], images[rows], 0).astype(np.uint8),
            "label": np.where(mask, labels[rows], 0).astype(np.int32),
            "mask": mask,
        }
