"""What a locality analysis leaves in a workdir: `locality.json`, `plots/`, metrics scalars.

`analyze_and_write` is the one call shared by the train loop and `python -m vit_locality.analyze`:
the jitted pass over the eval images, then `locality.json` and the per-head and attention-map
figures. `write_training_curves` redraws `plots/training_curves.png` from `metrics.jsonl`.

Scalars for `metrics.jsonl` and TensorBoard (`locality_scalars`), all floats, MAD as a fraction of
the image width and entropy normalized to [0, 1] as in `locality.DEFINITIONS`:

- `locality/min_mad_first_layer`, `locality/min_mad_early`: the headline values,
- `locality/{mad,entropy}_{min,mean,max}/layer_{l:02d}`: min / mean / max over the heads of
  layer l, numbered from 1 as in every table and figure, e.g. `locality/mad_mean/layer_01`
  for the first layer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from etils import epath
from jax.sharding import Mesh

from vit_locality.analysis import plots
from vit_locality.analysis.attention_pass import (
    analyze_params,
    centre_attention_layers,
    patch_grid,
)
from vit_locality.analysis.locality import DEFINITIONS, summarize, uniform_mad
from vit_locality.predict import Predictor
from vit_locality.workdir import RunDir

PER_LAYER_STATS = tuple(
    f"{name}_{stat}" for name in ("mad", "entropy") for stat in ("min", "mean", "max")
)


def locality_record(
    per_head: Mapping[str, Any],
    *,
    step: int,
    dataset: str,
    num_images: int,
    image_size: int,
    patch_size: int,
    grid: tuple[int, int],
    num_prefix_tokens: int,
) -> dict[str, Any]:
    """The `locality.json` object of docs/locality.md, JSON-ready.

    Args:
      per_head: name -> `[L, H]` array-like, every metric of `locality.DEFINITIONS`.
      step: the training step of the parameters analysed.
      dataset: the config's dataset name.
      num_images: how many eval images (the first ones of the test split) were averaged over.
      image_size: image side in pixels.
      patch_size: patch side in pixels.
      grid: `(gh, gw)`, the patch grid.
      num_prefix_tokens: P (1 with a CLS token, 0 with GAP).

    Returns:
      `{"step", "dataset", "num_images", "image_size", "patch_size", "grid": [gh, gw],
      "num_prefix_tokens", "definitions", "per_head": {name: [[L x H floats]]}, "summary"}`.
    """
    return {
        "step": int(step),
        "dataset": dataset,
        "num_images": int(num_images),
        "image_size": int(image_size),
        "patch_size": int(patch_size),
        "grid": [int(grid[0]), int(grid[1])],
        "num_prefix_tokens": int(num_prefix_tokens),
        "definitions": dict(DEFINITIONS),
        "per_head": {
            name: np.asarray(per_head[name], np.float64).tolist() for name in sorted(DEFINITIONS)
        },
        "summary": summarize(per_head),
    }


def write_locality(run_dir: RunDir, record: Mapping[str, Any]) -> None:
    """Writes `record` (see `locality_record`) to the run's `locality.json`, atomically: a
    reader never sees half a file."""
    path = run_dir.locality_file
    partial = path.with_name(path.name + ".tmp")
    # One line per innermost list of numbers (a layer's heads), not one line per number.
    text = re.sub(
        r"\[\s+([-+.\deE,\s]+?)\s+\]",
        lambda m: "[" + " ".join(m.group(1).split()) + "]",
        json.dumps(record, indent=1),
    )
    partial.write_text(text + "\n")
    partial.replace(path)


def locality_scalars(summary: Mapping[str, Any]) -> dict[str, float]:
    """Flat `locality/...` scalars (names in the module docstring) from `summarize` output."""
    scalars = {
        "locality/min_mad_first_layer": float(summary["min_mad_first_layer"]),
        "locality/min_mad_early": float(summary["min_mad_early"]),
    }
    for stat in PER_LAYER_STATS:
        for layer, value in enumerate(summary[stat], start=1):
            scalars[f"locality/{stat}/layer_{layer:02d}"] = float(value)
    return scalars


def format_table(record: Mapping[str, Any]) -> str:
    """A compact per-layer table of a `locality.json` record: MAD and entropy min/mean/max."""
    s = record["summary"]
    gh, gw = record["grid"]
    lines = [
        f"locality at step {record['step']}: {record['dataset']}, {record['num_images']} test "
        f"images, {gh}x{gw} patches of {record['patch_size']} px, "
        f"{record['num_prefix_tokens']} prefix token(s)",
        "MAD: fraction of the image width; entropy: 1 = uniform over patches",
        f"{'layer':>5}  {'MAD min':>7} {'mean':>6} {'max':>6}   {'entropy min':>11} {'mean':>6} "
        f"{'max':>6}",
    ]
    for layer in range(len(s["mad_min"])):
        lines.append(
            f"{layer + 1:>5}  {s['mad_min'][layer]:>7.4f} {s['mad_mean'][layer]:>6.4f} "
            f"{s['mad_max'][layer]:>6.4f}   {s['entropy_min'][layer]:>11.4f} "
            f"{s['entropy_mean'][layer]:>6.4f} {s['entropy_max'][layer]:>6.4f}"
        )
    lines.append(
        f"min_mad_first_layer {s['min_mad_first_layer']:.4f}   "
        f"min_mad_early {s['min_mad_early']:.4f}"
    )
    return "\n".join(lines)


def _about(record: Mapping[str, Any], with_step: bool = True) -> str:
    """What a figure shows, for its title: "cifar10, step 300, 128 images"."""
    step = f", step {record['step']}" if with_step else ""
    return f"{record['dataset']}{step}, {record['num_images']} images"


def write_locality_plots(
    run_dir: RunDir,
    record: Mapping[str, Any],
    images: np.ndarray,
    maps: np.ndarray,
) -> list[epath.Path]:
    """Writes `plots/mad_per_head.png`, `plots/entropy_per_head.png`, `plots/attention_maps.png`.

    Args:
      run_dir: the run directory.
      record: its `locality.json` record (`locality_record`).
      images: uint8 `[B, H, W, C]`, a few raw eval images.
      maps: `[B, heads, gh, gw]`, their first-layer attention from the centre patch
        (`attention_pass.centre_attention`, layer 0).

    Returns:
      The paths written.
    """
    out, about = run_dir.plots_dir, _about(record)
    grid_px = record["grid"][1] * record["patch_size"]
    mad = np.asarray(record["per_head"]["mad"])
    return [
        plots.plot_per_head(
            mad,
            out / "mad_per_head.png",
            ylabel="mean attention distance (fraction of width)",
            title=f"Mean attention distance per head\n{about}",
            uniform=uniform_mad(record["grid"]),
            pixels_per_unit=grid_px,
        ),
        plots.plot_per_head(
            np.asarray(record["per_head"]["entropy"]),
            out / "entropy_per_head.png",
            ylabel="normalized attention entropy",
            title=f"Attention entropy per head\n{about}",
            uniform=1.0,
        ),
        plots.plot_attention_maps(
            images,
            maps,
            out / "attention_maps.png",
            title=f"Layer 1 attention from the centre patch (cyan)\n{about}; heads titled by MAD",
            head_labels=[f"{v:.3f}" for v in mad[0]],
        ),
    ]


def write_training_curves(run_dir: RunDir) -> epath.Path | None:
    """Redraws `plots/training_curves.png` from `metrics.jsonl`; None when it has no rows."""
    rows = run_dir.read_metrics()
    if not rows:
        return None
    return plots.plot_training_curves(
        rows, run_dir.plots_dir / "training_curves.png", title=run_dir.path.name
    )


def analyze_and_write(
    run_dir: RunDir,
    predictor: Predictor,
    params: Any,
    images: np.ndarray,
    *,
    step: int,
    dataset: str,
    mesh: Mesh,
    batch_size: int,
    num_map_images: int = 4,
    rollout: str | None = None,
) -> dict[str, Any]:
    """Analyses `params` on `images`; process 0 writes `locality.json` and the three figures of
    `write_locality_plots` (and with `rollout` the three of `write_checkpoint_plots`).

    Every process must call it (the pass is a collective over `mesh`) with the same `images`.

    Args:
      run_dir: the run directory (it must exist).
      predictor: the ViT with its dataset's normalization; params: its parameters (replicated
        on `mesh`, or placed there).
      images: uint8 `[N, H, W, C]`, the first N raw test images (N: the locality evaluator's
        `num_images`).
      step: the training step of `params`.
      dataset: the config's dataset name (recorded in locality.json).
      mesh: the ('data',) mesh.
      batch_size: global batch size of the pass (rounded up to a multiple of the device count).
      num_map_images: how many of `images` the attention-map figure shows.
      rollout: None, or the head fusion of attention rollout (`attention_pass.ROLLOUT_FUSIONS`),
        computed in the same pass (one process only); then `plots/rollout.png` (the first
        `num_map_images` images with their rollout), `plots/mad_px_vit_paper.png` and
        `plots/attention_maps_layers.png` are written too.

    Returns:
      The `locality.json` record; `locality_scalars(record["summary"])` gives the metrics scalars.
    """
    model = predictor.model
    per_head = analyze_params(
        predictor, params, images, mesh=mesh, batch_size=batch_size, rollout=rollout
    )
    rollout_maps = per_head.pop("rollout", None)
    record = locality_record(
        per_head,
        step=step,
        dataset=dataset,
        num_images=len(images),
        image_size=images.shape[1],
        patch_size=model.patch_size,
        grid=patch_grid(model, images.shape[1:3]),
        num_prefix_tokens=model.num_prefix_tokens,
    )
    map_images = images[:num_map_images]
    maps = centre_attention_layers(predictor, params, map_images)  # [L, B, heads, gh, gw]
    if jax.process_index() == 0:
        write_locality(run_dir, record)
        write_locality_plots(run_dir, record, map_images, maps[0])
        if rollout_maps is not None:
            write_checkpoint_plots(
                run_dir, record, map_images, rollout_maps[:num_map_images], rollout, maps[:, 0]
            )
    return record


def write_checkpoint_plots(
    run_dir: RunDir,
    record: Mapping[str, Any],
    images: np.ndarray,
    maps: np.ndarray,
    fusion: str,
    layer_maps: np.ndarray,
) -> list[epath.Path]:
    """Writes `plots/mad_px_vit_paper.png`, `plots/rollout.png` and
    `plots/attention_maps_layers.png`.

    The first is the ViT paper's attention-distance figure (Dosovitskiy et al. 2021, Fig. 7):
    every head's mean attention distance in pixels against depth, as its authors computed it
    (`mad_unnorm_px`: the CLS column dropped, not renormalised), with uniform attention over the
    patches as the reference line (116.5 px for 14 x 14 patches of 16 px).

    Args:
      run_dir: the output directory.
      record: its `locality.json` record.
      images: uint8 `[B, H, W, C]`, a few of the analysed images.
      maps: `[B, gh, gw]`, their attention rollout maps.
      fusion: the head fusion the rollout used ("mean", "max" or "min").
      layer_maps: `[L, heads, gh, gw]`, every layer's attention from the centre patch on the
        first of `images` (`attention_pass.centre_attention_layers`), one row per layer.

    Returns:
      The paths written.
    """
    out, about = run_dir.plots_dir, _about(record, with_step=False)
    return [
        plots.plot_per_head(
            np.asarray(record["per_head"]["mad_unnorm_px"]),
            out / "mad_px_vit_paper.png",
            ylabel="mean attention distance (pixels)",
            title=f"Mean attention distance per head, the ViT paper's form\n{about}",
            uniform=uniform_mad(record["grid"]) * record["grid"][1] * record["patch_size"],
        ),
        plots.plot_rollout(
            images,
            maps,
            out / "rollout.png",
            title=f"Attention rollout (heads fused by {fusion})\n{about}",
        ),
        plots.plot_attention_maps(
            np.repeat(images[:1], len(layer_maps), axis=0),
            layer_maps,
            out / "attention_maps_layers.png",
            title=f"Attention from the centre patch (cyan), a row per layer from layer 1\n{about}",
        ),
    ]
