"""Draws what the Modern augmentations do to real CIFAR-10 images, for a human to check.

Writes to `--out` (default `runs/augmentation_grid/`):
  ops.png          every AutoAugment op at magnitude bins 0, 3, 6, 9 (and negated where signed)
  subpolicies.png  each of the 25 CIFAR-10 sub-policies applied with all its ops forced on
  autoaugment.png  the random policy (crop + flip + AutoAugment) on 8 images, 8 seeds each
  color_jitter.png ColorJitter 0.4 on 8 images, 8 seeds each

    python scripts/augmentation_grid.py [--data_dir=../shared/data/cifar10-sample] [--out=DIR]
"""

from __future__ import annotations

import argparse
import pathlib

import vit_locality  # noqa: F401  (sets TensorFlow's environment before its first import)

# isort: split
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from configs import common  # noqa: E402
from vit_locality.data import files  # noqa: E402
from vit_locality.data.augment import make_train_augment  # noqa: E402
from vit_locality.data.autoaugment import (  # noqa: E402
    CIFAR10_POLICY,
    OP_NAMES,
    SIGNED_OPS,
    apply_op,
)
from vit_locality.data.color_jitter import color_jitter  # noqa: E402

BINS = (0, 3, 6, 9)


def save_grid(rows: list[list[np.ndarray]], row_titles: list[str], col_titles, path, title):
    fig, axes = plt.subplots(
        len(rows), len(rows[0]), figsize=(1.1 * len(rows[0]) + 1.6, 1.1 * len(rows)), squeeze=False
    )
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            ax = axes[r, c]
            if image is None:  # an op without magnitude has one column only
                ax.axis("off")
                continue
            ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(row_titles[r], rotation=0, ha="right", va="center", fontsize=7)
            if r == 0 and col_titles:
                ax.set_title(col_titles[c], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = pathlib.Path(__file__).resolve().parents[2] / "shared/data/cifar10-sample"
    parser.add_argument("--data_dir", default=str(default_dir))
    parser.add_argument("--out", default="runs/augmentation_grid")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images, _ = files.read_cifar10(args.data_dir, "test")
    images = images[:8]
    image = tf.constant(images[3])  # a ship

    rows, titles = [], []
    for op in OP_NAMES:
        for negate in (False, True) if op in SIGNED_OPS else (False,):
            bins = BINS if op not in ("AutoContrast", "Equalize", "Invert") else (0,)
            row = [images[3]] + [apply_op(image, op, b, negate=negate).numpy() for b in bins]
            rows.append(row + [None] * (len(BINS) + 1 - len(row)))
            titles.append(f"{op}{' (-)' if negate else ''}")
    cols = ["original"] + [f"bin {b}" for b in BINS]
    save_grid(rows, titles, cols, out / "ops.png", "AutoAugment ops by magnitude bin")

    rows, titles = [], []
    for i, (first, second) in enumerate(CIFAR10_POLICY):
        row = []
        for x in images:
            y = tf.constant(x)
            for name, _, magnitude_bin in (first, second):
                y = apply_op(y, name, magnitude_bin or 0)
            row.append(y.numpy())
        rows.append(row)
        titles.append(f"{i}: {first[0]} {first[2]}, {second[0]} {second[2]}")
    save_grid(rows, titles, None, out / "subpolicies.png", "The 25 sub-policies, both ops on")

    for name, aug in (
        ("autoaugment", dict(autoaugment=True, color_jitter=0.0)),
        ("color_jitter", dict(autoaugment=False, color_jitter=0.4)),
    ):
        if name == "color_jitter":
            rows = [
                [x]
                + [color_jitter(tf.constant(x), 0.4, tf.constant([s, 0])).numpy() for s in range(7)]
                for x in images
            ]
        else:
            config = common.get_config("cifar10")
            config.aug.update(aug)
            augment = make_train_augment(config)
            rows = [
                [x]
                + [augment(tf.constant(x), tf.constant([s, i], tf.int64)).numpy() for s in range(7)]
                for i, x in enumerate(images)
            ]
        cols = ["original"] + [f"seed {s}" for s in range(7)]
        save_grid(rows, [""] * len(rows), cols, out / f"{name}.png", name)
    print(f"wrote {sorted(p.name for p in out.glob('*.png'))} to {out}")


if __name__ == "__main__":
    main()
