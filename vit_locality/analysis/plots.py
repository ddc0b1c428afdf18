"""Figures of a run's attention locality and training curves (matplotlib, Agg, no pyplot state).

- `plot_per_head`: one dot per head per layer (x = the layer, numbered from 1 as in every table),
  the layout of the ViT paper's attention-distance figure, with each layer's mean over heads and
  the value uniform attention would give; used for `plots/mad_per_head.png` and
  `plots/entropy_per_head.png`.
- `plot_attention_maps`: for a few images, each head's attention from the centre patch over the
  image (`plots/attention_maps.png`).
- `plot_rollout`: for a few images, the image and its attention rollout over it
  (`plots/rollout.png` of `analyze --checkpoint`).
- `plot_training_curves`: train loss, val prec@1 and `locality/min_mad_first_layer` over steps
  from `metrics.jsonl` rows (`plots/training_curves.png`).
"""

from __future__ import annotations

import io
import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from etils import epath
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

DPI = 120
CURVES = (  # metrics.jsonl key, panel title
    ("train/loss", "train loss"),
    ("val/prec@1", "val prec@1 (%)"),
    ("locality/min_mad_first_layer", "min MAD, first layer (fraction of width)"),
)


def new_figure(size: tuple[float, float]) -> Figure:
    """A figure of `size` inches with constrained layout, outside pyplot's global state."""
    return Figure(figsize=size, layout="constrained")


def save_figure(
    fig: Figure,
    path: str | pathlib.Path | epath.Path,
    *,
    suptitle: str | None = None,
    fontsize: int = 9,
) -> epath.Path:
    """Writes `fig` as a PNG at `path`, local or gs:// (parent directories created), under
    `suptitle` when given; returns `path`."""
    if suptitle is not None:
        fig.suptitle(suptitle, fontsize=fontsize)
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI)
    path.write_bytes(png.getvalue())
    return path


def plot_per_head(
    values: np.ndarray,
    path: str | pathlib.Path,
    *,
    ylabel: str,
    title: str,
    uniform: float | None = None,
    pixels_per_unit: float | None = None,
) -> epath.Path:
    """Writes a per-head scatter: one dot per head at each layer, a bar at the layer's mean.

    Args:
      values: `[L, H]`, one metric per layer and head.
      path: the PNG to write (parent directories are created).
      ylabel: the y axis label, with its unit.
      title: the figure title.
      uniform: the value for uniform attention, drawn as a dashed reference line.
      pixels_per_unit: when given, a right-hand axis shows `value * pixels_per_unit` in pixels.

    Returns:
      `path`.
    """
    values = np.asarray(values, np.float64)
    num_layers, num_heads = values.shape
    fig = new_figure((max(4.5, 0.55 * num_layers + 2.5), 3.8))
    ax = fig.add_subplot()
    numbers = np.arange(1, num_layers + 1)
    layers = np.repeat(numbers, num_heads)
    ax.scatter(layers, values.ravel(), s=22, alpha=0.7, color="C0", label=f"{num_heads} heads")
    ax.scatter(numbers, values.mean(1), marker="_", s=300, color="k", label="mean of heads")
    if uniform is not None:
        ax.axhline(uniform, color="0.5", linestyle="--", linewidth=1, label="uniform attention")
    if pixels_per_unit is not None:
        scale = float(pixels_per_unit)
        right = ax.secondary_yaxis("right", functions=(lambda v: v * scale, lambda v: v / scale))
        right.set_ylabel("pixels")
    top = max(float(values.max()), uniform or 0.0)
    ax.set_ylim(0.0, 1.08 * top if top > 0 else 1.0)
    ax.set_xticks(numbers)
    ax.set_xlim(0.4, num_layers + 0.6)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def plot_attention_maps(
    images: np.ndarray,
    maps: np.ndarray,
    path: str | pathlib.Path,
    *,
    title: str,
    head_labels: Sequence[str] | None = None,
) -> epath.Path:
    """Writes a grid: one row per image, its raw image, then each head's map over the image.

    Args:
      images: uint8 `[B, H, W, C]` (C = 1 or 3), the raw images.
      maps: `[B, heads, gh, gw]`, attention of the query patch at cell `(gh // 2, gw // 2)` over
        the patches; each panel is scaled to its own maximum.
      path: the PNG to write.
      title: the figure title.
      head_labels: optional text under each head's column title (e.g. its MAD).

    Returns:
      `path`.
    """
    num_images, num_heads, gh, gw = maps.shape
    height, width = images.shape[1:3]
    cols = num_heads + 1
    fig = new_figure((max(1.15 * cols, 4.5), 1.2 * num_images + 0.8))
    axes = fig.subplots(num_images, cols, squeeze=False)
    cell_h, cell_w = height / gh, width / gw
    query_corner = ((gw // 2) * cell_w - 0.5, (gh // 2) * cell_h - 0.5)
    for b in range(num_images):
        image = images[b, ..., 0] if images.shape[-1] == 1 else images[b]
        for col, ax in enumerate(axes[b]):
            ax.imshow(image, cmap="gray", interpolation="nearest")
            if col > 0:
                ax.imshow(
                    maps[b, col - 1],
                    cmap="inferno",
                    alpha=0.65,
                    vmin=0.0,
                    vmax=max(float(maps[b, col - 1].max()), 1e-12),
                    extent=(-0.5, width - 0.5, height - 0.5, -0.5),
                    interpolation="nearest",
                )
            ax.add_patch(
                Rectangle(query_corner, cell_w, cell_h, fill=False, edgecolor="cyan", linewidth=1)
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if b == 0:
                label = "image" if col == 0 else f"head {col - 1}"
                if col > 0 and head_labels is not None:
                    label += f"\n{head_labels[col - 1]}"
                ax.set_title(label, fontsize=7)
    return save_figure(fig, path, suptitle=title)


def plot_rollout(
    images: np.ndarray, maps: np.ndarray, path: str | pathlib.Path, *, title: str
) -> epath.Path:
    """Writes two rows: the images, then each image with its rollout map over it.

    Args:
      images: uint8 `[B, H, W, C]` (C = 1 or 3), the images as the model saw them.
      maps: `[B, gh, gw]`, each image's rollout over the patches; each panel is scaled to its
        own maximum.
      path: the PNG to write.
      title: the figure title.

    Returns:
      `path`.
    """
    num_images = maps.shape[0]
    height, width = images.shape[1:3]
    fig = new_figure((max(1.6 * num_images, 4.5), 3.6))
    axes = fig.subplots(2, num_images, squeeze=False)
    for b in range(num_images):
        image = images[b, ..., 0] if images.shape[-1] == 1 else images[b]
        for row, ax in enumerate(axes[:, b]):
            ax.imshow(image, cmap="gray", interpolation="nearest")
            if row == 1:
                ax.imshow(
                    maps[b],
                    cmap="inferno",
                    alpha=0.6,
                    vmin=0.0,
                    vmax=max(float(maps[b].max()), 1e-12),
                    extent=(-0.5, width - 0.5, height - 0.5, -0.5),
                    interpolation="bilinear",
                )
            ax.set_xticks([])
            ax.set_yticks([])
    return save_figure(fig, path, suptitle=title)


def plot_training_curves(
    rows: Sequence[Mapping[str, Any]], path: str | pathlib.Path, *, title: str
) -> epath.Path:
    """Writes train loss, val prec@1 and first-layer min MAD against the step, side by side.

    Args:
      rows: `metrics.jsonl` rows (`RunDir.read_metrics`); a panel whose key no row has (or
        only non-finite values, stored as strings) says so instead of plotting.
      path: the PNG to write.
      title: the figure title.

    Returns:
      `path`.
    """
    fig = new_figure((11, 3.2))
    for ax, (key, label) in zip(fig.subplots(1, len(CURVES)), CURVES, strict=True):
        points = [
            (row["step"], float(row[key]))
            for row in rows
            if isinstance(row.get(key), int | float) and math.isfinite(row[key])
        ]
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        else:
            ax.text(0.5, 0.5, f"no {key} yet", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(label, fontsize=9)
    return save_figure(fig, path, suptitle=title, fontsize=10)
