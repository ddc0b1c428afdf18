"""The report's figures, drawn with `vit_locality.analysis.plots`' conventions (matplotlib's
object API, no pyplot state): per-head MAD and entropy per run, the first-layer minimum MAD per
CIFAR-100 condition, locality during training (against the epoch; the first-layer minimum MAD
against the step, with the uniform-attention line)."""

from __future__ import annotations

import math
import pathlib
import textwrap

import numpy as np

from vit_locality.analysis.locality import uniform_mad
from vit_locality.analysis.plots import new_figure, save_figure
from vit_locality.report.conditions import (
    PAPER,
    Group,
    RunResults,
)


def per_head_figure(
    runs: list[RunResults], labels: dict[str, str], metric: str, path: pathlib.Path
) -> bool:
    """One panel per run with locality.json (titled with its name and `labels[name]`, the
    condition): x the layer (from 1), y `metric` of each head (a dot)."""
    runs = [r for r in runs if r.locality is not None]
    if not runs:
        return False
    cols = min(4, len(runs))
    rows = math.ceil(len(runs) / cols)
    fig = new_figure((3.4 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False)
    for ax, run in zip(axes.flat, runs, strict=False):
        values = np.asarray(run.locality["per_head"][metric], dtype=float)  # [L, H]
        layers = np.repeat(np.arange(1, values.shape[0] + 1), values.shape[1])
        ax.scatter(layers, values.ravel(), s=12, alpha=0.7)
        title = f"{run.name}\n{labels[run.name]}"
        if metric == "mad":
            ax.axhline(uniform_mad(run.locality["grid"]), color="grey", ls=":", lw=1)
            title += f", min L1 {values[0].min():.3f}"
        else:
            ax.axhline(1.0, color="grey", ls=":", lw=1)
        ax.set_title(textwrap.fill(title, 44, replace_whitespace=False), fontsize=7)
        ax.set_xticks(range(1, values.shape[0] + 1))
        ax.set_xlabel("layer")
    for ax in axes.flat[len(runs) :]:
        ax.set_visible(False)
    ylabel = "MAD (fraction of width)" if metric == "mad" else "entropy (1 = uniform)"
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    axes.flat[0].set_ylim(bottom=0)
    note = "dotted: uniform attention" if metric == "mad" else "dotted: uniform (1)"
    save_figure(fig, path, suptitle=f"{metric} per head ({note})", fontsize=10)
    return True


def conditions_figure(groups: list[Group], path: pathlib.Path) -> bool:
    """Bars of the first-layer minimum MAD per CIFAR-100 condition, seeds as dots."""
    groups = [
        g
        for g in groups
        if g.dataset == "cifar100" and g.values(lambda r: r.summary("min_mad_first_layer"))
    ]
    if not groups:
        return False
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig = new_figure((max(6.0, 0.7 * len(groups) + 3.5), 3.8))
    ax = fig.subplots()
    for i, g in enumerate(groups):
        values = g.values(lambda r: r.summary("min_mad_first_layer"))
        color = "tab:orange" if "cm" in g.components else "tab:blue"
        err = np.std(values, ddof=1) if len(values) > 1 else 0.0
        ax.bar(i, np.mean(values), color=color, yerr=err, capsize=3)
        ax.scatter([i] * len(values), values, color="black", s=8, zorder=3)
        published = PAPER.min_mad.get((g.dataset, g.condition))
        if published is not None:
            ax.scatter(i, published, marker="x", color="red", s=40, zorder=4)
    ax.axhline(PAPER.cutmix_max, color="tab:orange", ls="--", lw=1)
    ax.axhline(PAPER.no_cutmix_min, color="tab:blue", ls="--", lw=1)
    ax.set_xticks(range(len(groups)), [g.label for g in groups], rotation=45, ha="right")
    ax.set_ylabel("min MAD, layer 1")
    ax.set_title("CIFAR-100: first-layer minimum MAD per condition (dots: seeds)", fontsize=9)
    legend = [
        Patch(color="tab:orange", label="with CutMix"),
        Patch(color="tab:blue", label="without CutMix"),
        Line2D([], [], color="tab:orange", ls="--", label=f"paper: ≤ {PAPER.cutmix_max}"),
        Line2D([], [], color="tab:blue", ls="--", label=f"paper: ≥ {PAPER.no_cutmix_min}"),
        Line2D([], [], color="red", marker="x", ls="", label="paper: published"),
    ]
    ax.legend(handles=legend, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save_figure(fig, path)
    return True


def min_mad_steps_figure(groups: list[Group], path: pathlib.Path) -> bool:
    """`locality/min_mad_first_layer` (metrics.jsonl) against the step, one line per run
    (colour: its group; dashed: runs with CutMix), and the MAD of uniform attention over each
    token grid the runs have (dotted)."""
    from vit_locality.report.tables import MIN_MAD_KEY

    runs = [(i, g, r) for i, g in enumerate(groups) for r in g.runs if r.curve(MIN_MAD_KEY)]
    if not runs:
        return False
    from matplotlib import colormaps

    colors = colormaps["tab10"].colors
    fig = new_figure((8.0, 4.2))
    ax = fig.subplots()
    for i, group, run in runs:
        curve = run.curve(MIN_MAD_KEY)
        style = {"color": colors[i % 10], "ls": "--" if "cm" in group.components else "-"}
        label = f"{run.name} ({group.label})"
        ax.plot(list(curve), list(curve.values()), marker=".", ms=4, label=label, **style)
    for grid in sorted({run.grid for _, _, run in runs}):
        value = uniform_mad(grid)
        ax.axhline(value, color="grey", ls=":", lw=1)
        ax.annotate(
            f"uniform attention, {grid[0]}x{grid[1]} grid: {value:.3f}",
            (0.01, value),
            xycoords=("axes fraction", "data"),
            xytext=(0, 3),
            textcoords="offset points",
            fontsize=7,
            color="grey",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("min MAD, layer 1 (fraction of width)")
    ax.set_ylim(bottom=0, top=max(uniform_mad(r.grid) for _, _, r in runs) * 1.1)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save_figure(fig, path, suptitle="First-layer minimum MAD during training", fontsize=10)
    return True


def curves_figure(runs: list[RunResults], path: pathlib.Path) -> bool:
    """`locality/min_mad_first_layer` and `locality/min_mad_early` against the epoch."""
    keys = [
        k
        for k in ("locality/min_mad_first_layer", "locality/min_mad_early")
        if any(k in row for run in runs for row in run.rows)
    ]
    if not keys:
        return False
    from matplotlib import colormaps

    fig = new_figure((4.5 * len(keys) + 2.5, 3.8))
    axes = fig.subplots(1, len(keys), squeeze=False)
    colors = colormaps["tab20"].colors
    for ax, key in zip(axes[0], keys, strict=True):
        for i, run in enumerate(runs):
            # one point per step: a resumed run may have logged a step twice
            points = sorted(
                {r["step"]: (r["epoch"], r[key]) for r in run.rows if key in r}.values()
            )
            if points:
                style = {"color": colors[i % 20], "ls": "-" if i < 20 else "--"}
                ax.plot(*zip(*points, strict=True), marker=".", label=run.name, **style)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.removeprefix("locality/"))
        ax.set_ylim(bottom=0)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save_figure(fig, path)
    return True
