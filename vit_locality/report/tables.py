"""The report's Markdown tables: Baseline vs Modern per dataset (headline and per layer), every
condition of a dataset with its components and the paper's bounds, the first-layer minimum MAD
at every analysis step with the gap CutMix opens, every run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from vit_locality.augment import protocol, registry
from vit_locality.report.conditions import (
    ABLATION,
    DATASET_NAMES,
    PAPER,
    Group,
    cutmix_pairs,
)

MIN_MAD_KEY = "locality/min_mad_first_layer"  # metrics.jsonl's first-layer minimum MAD


def mean_std(values: Sequence[float], digits: int) -> str:
    """`m` for one value, `m ± s` (sample std) for several, `–` for none."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _runs_cell(group: Group) -> str:
    seeds = ", ".join(str(r.config["seed"]) for r in group.runs)
    missing = sum(r.locality is None for r in group.runs)
    note = f"; {missing} accuracy only" if missing else ""
    return f"{len(group.runs)} (seed {seeds}{note})"


def _min_mad(group: Group, key: str = "min_mad_first_layer") -> str:
    values = group.values(lambda r: r.summary(key))
    return mean_std(values, 3) if values else "– (no locality.json)"


def _paper_bound(group: Group) -> tuple[float, str] | None:
    """The paper's (bound, relation) for a CIFAR-100 ablation condition: with CutMix the min
    MAD is <= 0.024, without it >= 0.210."""
    if group.dataset != "cifar100" or group.condition not in ABLATION:
        return None
    if "cm" in group.components:
        return PAPER.cutmix_max, "≤"
    return PAPER.no_cutmix_min, "≥"


def _paper_cell(group: Group, bounds: bool = True) -> str:
    """The published min MAD and (with `bounds`) the ablation's bound, e.g. `0.316 / ≥ 0.210`."""
    parts = []
    published = PAPER.min_mad.get((group.dataset, group.condition))
    if published is not None:
        parts.append(f"{published:.3f}")
    bound = _paper_bound(group)
    if bounds and bound is not None:
        parts.append(f"{bound[1]} {bound[0]:.3f}")
    return " / ".join(parts) or "–"


def _agrees_cell(group: Group) -> str:
    bound = _paper_bound(group)
    values = group.values(lambda r: r.summary("min_mad_first_layer"))
    if bound is None or not values:
        return "–"
    mean = float(np.mean(values))
    return "✓" if (mean <= bound[0] if bound[1] == "≤" else mean >= bound[0]) else "✗"


def baseline_vs_modern(groups: list[Group]) -> list[str]:
    """The dataset's Baseline and Modern groups: headline table and per-layer table."""
    lines = [
        *table(
            [
                "protocol",
                "runs",
                "top-1 (%)",
                "min MAD, layer 1",
                "paper",
                "min MAD, first third",
                "mean MAD, layer 1",
                "mean entropy, layer 1",
            ],
            (
                [
                    g.label,
                    _runs_cell(g),
                    mean_std(g.values(lambda r: r.top1), 2),
                    _min_mad(g),
                    _paper_cell(g, bounds=False),
                    _min_mad(g, "min_mad_early"),
                    mean_std(g.values(lambda r: r.first_layer("mad_mean")), 3),
                    mean_std(g.values(lambda r: r.first_layer("entropy_mean")), 3),
                ]
                for g in groups
            ),
        ),
        "",
    ]
    with_locality = [g for g in groups if g.values(lambda r: r.locality)]
    if with_locality:
        depth = max(
            len(mad) for g in with_locality for mad in g.values(lambda r: r.summary("mad_mean"))
        )
        lines += [
            "Per layer, mean over heads (and over seeds):",
            "",
            *table(
                ["", *(f"L{i + 1}" for i in range(depth))],
                (
                    [f"{g.label} {title}", *_layer_means(g, key, depth)]
                    for key, title in (("mad_mean", "MAD"), ("entropy_mean", "entropy"))
                    for g in with_locality
                ),
            ),
            "",
        ]
    return lines


def _layer_means(group: Group, key: str, depth: int) -> list[str]:
    per_run = [v for v in group.values(lambda r: r.summary(key)) if len(v) == depth]
    if not per_run:
        return ["–"] * depth
    return [f"{m:.3f}" for m in np.mean(per_run, axis=0)]


def conditions_table(dataset: str, groups: list[Group]) -> list[str]:
    """Every condition of a dataset with its components (✓/–); the paper's bounds on CIFAR-100."""
    named = registry.by_key()
    keys = list(named)
    used = [k for k in keys if any(k in g.components for g in groups)]
    if dataset == "cifar100":
        used = list(dict.fromkeys([*protocol.modern_components(dataset), *used]))
        used.sort(key=keys.index)
    paper = dataset == "cifar100"
    header = ["condition", *(named[k].title for k in used), "runs", "top-1 (%)"]
    header += ["min MAD, layer 1", "min MAD, first third"]
    header += ["paper", "agrees"] if paper else []
    rows = []
    for g in groups:
        row = [g.label, *("✓" if k in g.components else "–" for k in used), _runs_cell(g)]
        row += [mean_std(g.values(lambda r: r.top1), 2), _min_mad(g)]
        row += [_min_mad(g, "min_mad_early")]
        row += [_paper_cell(g), _agrees_cell(g)] if paper else []
        rows.append(row)
    return [*table(header, rows), ""]


def _at_step(group: Group, key: str, step: int) -> list[float]:
    return group.values(lambda r: r.curve(key).get(step))


def _step_mean(group: Group, key: str, step: int) -> float | None:
    values = _at_step(group, key, step)
    return float(np.mean(values)) if values else None


def steps_table(groups: list[Group]) -> list[str]:
    """One row per step at which any run of `groups` measured its first-layer minimum MAD
    (`locality/min_mad_first_layer` in metrics.jsonl): each group's value (mean ± std over the
    seeds that have the step), the gap (without minus with CutMix, of the means) of every pair
    that differs only in CutMix, and each group's top-1 where the step has one. [] when no run
    has the rows."""
    steps = sorted({s for g in groups for r in g.runs for s in r.curve(MIN_MAD_KEY)})
    if not steps:
        return []
    pairs = cutmix_pairs(groups)
    with_top1 = [g for g in groups if any(_at_step(g, "val/prec@1", s) for s in steps)]
    header = ["step", *(f"{g.label}" for g in groups)]
    header += [f"gap ({a.label} − {b.label})" for a, b in pairs]
    header += [f"top-1 {g.label} (%)" for g in with_top1]
    rows = []
    for step in steps:
        row = [f"{step:,}", *(mean_std(_at_step(g, MIN_MAD_KEY, step), 3) for g in groups)]
        for without, with_cm in pairs:
            a, b = _step_mean(without, MIN_MAD_KEY, step), _step_mean(with_cm, MIN_MAD_KEY, step)
            row.append("–" if a is None or b is None else f"{a - b:+.3f}")
        row += [mean_std(_at_step(g, "val/prec@1", step), 1) for g in with_top1]
        rows.append(row)
    return [*table(header, rows), ""]


def runs_table(groups: list[Group]) -> list[str]:
    rows = []
    for g in groups:
        for run in g.runs:
            last, final = run.last_step, run.final_step
            steps = f"{last}" if final in (None, last) else f"{last} of {final}"
            loc = run.locality
            rows.append(
                [
                    f"`{run.name}`",
                    DATASET_NAMES.get(run.config["dataset"], run.config["dataset"]),
                    g.label,
                    str(run.config["seed"]),
                    steps,
                    "–" if run.top1 is None else f"{run.top1:.2f}",
                    "–" if loc is None else f"{loc['summary']['min_mad_first_layer']:.3f}",
                    "none (accuracy only)" if loc is None else f"step {loc['step']}",
                ]
            )
    return table(
        ["run", "dataset", "condition", "seed", "steps", "top-1 (%)", "min MAD L1", "locality"],
        rows,
    )
