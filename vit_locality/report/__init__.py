"""Tables and figures that compare runs: `python -m vit_locality.report RUN_DIR... --out=DIR`.

A RUN_DIR is a run's workdir (it holds `config.json`) or a directory of them (a sweep root). Only
`config.json`, `metrics.jsonl` and `locality.json` are read, so copied runs work; a run without
`locality.json` appears with its accuracy only. Writes into DIR:

- `report.md`: per dataset, Baseline vs Modern (top-1 = the last `val/prec@1`, the first-layer
  minimum MAD beside the paper's, per-layer mean MAD and entropy); every other condition of the
  dataset with its components (on CIFAR-100: the paper's ablation, with its bounds); every run.
- `mad_per_head.png`, `entropy_per_head.png`: one panel per run, a dot per head per layer.
- `min_mad_by_condition.png`: the first-layer minimum MAD per CIFAR-100 condition, with the
  paper's bounds.
- `locality_during_training.png`: `locality/min_mad_first_layer` (and `locality/min_mad_early`)
  from `metrics.jsonl` against the epoch, one line per run (when the rows have them).
- `min_mad_steps.png`: `locality/min_mad_first_layer` against the step, one line per run, with
  the uniform-attention line; report.md gives its numbers per dataset at every analysis step
  with the gap (without minus with CutMix) of every two conditions that differ only in CutMix.

Conditions are named from the config fields, not from labels: `aa` AutoAugment, `cj`
ColorJitter, `cm` CutMix, `mu` Mixup, `re` random erasing, `ls` label smoothing; `baseline` is
none of them and `modern` is `aa+cm+ls` (`cj+cm+ls` on Tiny-ImageNet). A setting other than the
usual one is written beside it, e.g. `cm(a=0.5)`. Runs whose configs differ only in `seed` (and
the `protocol` label) form one group, shown as mean ± sample std over the seeds.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from etils import epath

from vit_locality.report.conditions import (
    DATASET_NAMES,
    PAPER,
    group_runs,
    load_runs,
)
from vit_locality.report.figures import (
    conditions_figure,
    curves_figure,
    min_mad_steps_figure,
    per_head_figure,
)
from vit_locality.report.tables import (
    baseline_vs_modern,
    conditions_table,
    runs_table,
    steps_table,
)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def write_report(paths: Sequence[str | pathlib.Path], out: str | pathlib.Path) -> epath.Path:
    """Writes `out/report.md` and its figures for the runs in `paths`; returns report.md."""
    runs = load_runs(paths)
    groups = group_runs(runs)
    out = epath.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ordered = [run for g in groups for run in g.runs]
    labels = {run.name: g.label for g in groups for run in g.runs}

    lines = [
        "# Attention locality report",
        "",
        f"{_count(len(runs), 'run')} in {_count(len(groups), 'group')} (runs that differ only "
        "in seed; mean ± "
        "sample std over seeds). MAD: mean attention distance as a fraction of the image "
        "width; min MAD, layer 1: the minimum over the first layer's heads; first third: over "
        "the heads of the first third of the layers. Paper: Santiago Toledo & Martínez, "
        "arXiv 2605.16390 (its abstract gives CIFAR-100's numbers only).",
        "",
    ]
    for dataset in dict.fromkeys(g.dataset for g in groups):
        in_dataset = [g for g in groups if g.dataset == dataset]
        lines += [f"## {DATASET_NAMES.get(dataset, dataset)}", ""]
        protocols = [g for g in in_dataset if g.condition in ("baseline", "modern")]
        if protocols:
            lines += ["### Baseline vs Modern", "", *baseline_vs_modern(protocols)]
        if dataset == "cifar100" or len(protocols) < len(in_dataset):
            title = "Ablation and other conditions" if dataset == "cifar100" else "Conditions"
            lines += [f"### {title}", ""]
            if dataset == "cifar100":
                lines += [
                    f"The paper: every condition with CutMix has min MAD ≤ {PAPER.cutmix_max}, "
                    f"every one without ≥ {PAPER.no_cutmix_min:.3f}. *agrees*: our mean is on "
                    "the paper's side of its bound.",
                    "",
                ]
            lines += conditions_table(dataset, in_dataset)

    by_step = {
        d: steps_table([g for g in groups if g.dataset == d])
        for d in dict.fromkeys(g.dataset for g in groups)
    }
    if any(by_step.values()):
        lines += [
            "## First-layer min MAD at every analysis step",
            "",
            "From `locality/min_mad_first_layer` in metrics.jsonl (mean ± std over the seeds that "
            "have the step); gap: the condition without CutMix minus the one with it (positive: "
            "CutMix's first layer has the more local head); top-1 where the step has an eval. "
            "Figure: min_mad_steps.png.",
            "",
        ]
        for dataset, table_lines in by_step.items():
            if table_lines:
                lines += [f"### {DATASET_NAMES.get(dataset, dataset)}", "", *table_lines]

    lines += ["## Figures", ""]
    figures = [
        (
            "mad_per_head.png",
            "MAD per head",
            per_head_figure(ordered, labels, "mad", out / "mad_per_head.png"),
        ),
        (
            "entropy_per_head.png",
            "Entropy per head",
            per_head_figure(ordered, labels, "entropy", out / "entropy_per_head.png"),
        ),
        (
            "min_mad_by_condition.png",
            "First-layer min MAD per CIFAR-100 condition",
            conditions_figure(groups, out / "min_mad_by_condition.png"),
        ),
        (
            "min_mad_steps.png",
            "First-layer min MAD against steps",
            min_mad_steps_figure(groups, out / "min_mad_steps.png"),
        ),
        (
            "locality_during_training.png",
            "Locality during training",
            curves_figure(ordered, out / "locality_during_training.png"),
        ),
    ]
    for file, title, made in figures:
        lines += [f"### {title}", ""]
        lines += [f"![{title}]({file})" if made else "(no run has the data for this figure)", ""]

    lines += ["## Runs", "", *runs_table(groups), ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report
