"""The runs a report compares, and their conditions: loading workdirs (config.json, metrics.jsonl,
locality.json, plan.json) and grouping runs that differ only in seed under one condition, named
from the config by `vit_locality.augment.protocol`'s table. The paper's published numbers live
here too.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Iterable, Sequence
from typing import Any

from etils import epath

from vit_locality.augment import protocol
from vit_locality.config_fields import flatten, with_saved_before
from vit_locality.datasets import DATASETS
from vit_locality.errors import UserError
from vit_locality.evaluator_options import SHORT_NAMES, evaluator_options
from vit_locality.workdir import RunDir, is_remote

DATASET_NAMES = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "tiny_imagenet": "Tiny-ImageNet",
    "fashion_mnist": "Fashion-MNIST",
}
# The paper's ablation, in its order.
ABLATION = ("baseline", "aa", "cm", "ls", "aa+cm", "aa+ls", "cm+ls", "modern")


@dataclasses.dataclass(frozen=True)
class PaperNumbers:
    """What the paper publishes (its abstract): the first-layer minimum MAD by (dataset,
    condition), and the ablation's split: every condition with CutMix at most `cutmix_max`,
    every one without at least `no_cutmix_min`."""

    min_mad: dict[tuple[str, str], float]
    cutmix_max: float
    no_cutmix_min: float


PAPER = PaperNumbers(
    min_mad={("cifar100", "baseline"): 0.316, ("cifar100", "modern"): 0.008},
    cutmix_max=0.024,
    no_cutmix_min=0.210,
)
# Config fields that do not change what a run trains (grouping ignores them).
LABEL_FIELDS = ("seed", "protocol")


@dataclasses.dataclass
class RunResults:
    """What one workdir holds.

    Attributes:
      name: the workdir's name (with its parent's when two inputs share a name).
      path: the workdir.
      config: config.json.
      rows: metrics.jsonl's rows.
      locality: locality.json, or None.
      final_step: the step it ends at (plan.json), or None for a run that has none.
    """

    name: str
    path: epath.Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    locality: dict[str, Any] | None
    final_step: int | None

    @property
    def top1(self) -> float | None:
        """`val/prec@1` (%) of the last eval row, by step."""
        evals = [r for r in self.rows if isinstance(r.get("val/prec@1"), int | float)]
        return max(evals, key=lambda r: r["step"])["val/prec@1"] if evals else None

    @property
    def last_step(self) -> int:
        return max((r["step"] for r in self.rows), default=0)

    def summary(self, key: str) -> Any:
        """`locality.json`'s summary[key], or None without locality.json."""
        return None if self.locality is None else self.locality["summary"][key]

    @property
    def grid(self) -> tuple[int, int]:
        """The token grid (rows, columns): locality.json's, else the dataset's image size over
        the model's patch size."""
        if self.locality is not None:
            return tuple(self.locality["grid"])
        side = DATASETS[self.config["dataset"]].image_size // self.config["model"]["patch_size"]
        return side, side

    def curve(self, key: str) -> dict[int, float]:
        """step -> `key` of the metrics rows that have it, in step order (a resumed run may have
        written a step twice: the last row wins)."""
        points = {r["step"]: r[key] for r in self.rows if isinstance(r.get(key), int | float)}
        return dict(sorted(points.items()))

    def first_layer(self, key: str) -> float | None:
        """The first layer's value of a per-layer summary (`mad_mean`, `entropy_min`, ...)."""
        values = self.summary(key)
        return None if values is None else values[0]


@dataclasses.dataclass
class Group:
    """Runs that differ only in seed: one dataset, one condition."""

    dataset: str
    condition: str
    components: dict[str, dict[str, Any]]
    runs: list[RunResults]
    label: str = ""  # the condition, plus what tells it apart from a namesake group

    def values(self, get: Any) -> list[float]:
        """`get(run)` over the runs where it is not None."""
        return [v for v in (get(run) for run in self.runs) if v is not None]


def find_runs(paths: Sequence[str | pathlib.Path]) -> list[epath.Path]:
    """Workdirs named by `paths` (local or gs://): each is a workdir or a directory of them."""
    found: list[epath.Path] = []
    for path in map(epath.Path, paths):
        if not path.is_dir():
            raise UserError(f"{path} is not a directory")
        if RunDir(path).holds_run():
            found.append(path)
            continue
        subdirs = sorted(p for p in path.iterdir() if RunDir(p).holds_run())
        if not subdirs:
            raise UserError(f"{path} holds no run: no config.json in it or in its subdirectories")
        found += subdirs
    return list(dict.fromkeys(p if is_remote(p) else p.resolve() for p in found))


def load_run(path: epath.Path, name: str) -> RunResults:
    run_dir = RunDir(path)
    return RunResults(
        name=name,
        path=path,
        config=run_dir.require_config(),
        rows=run_dir.read_metrics(),
        locality=run_dir.read_locality(),
        final_step=run_dir.final_step(),
    )


def load_runs(paths: Sequence[str | pathlib.Path]) -> list[RunResults]:
    dirs = find_runs(paths)
    names = [d.name for d in dirs]
    return [
        load_run(d, d.name if names.count(d.name) == 1 else f"{d.parent.name}/{d.name}")
        for d in dirs
    ]


def group_runs(runs: Iterable[RunResults]) -> list[Group]:
    """Runs grouped by config minus `LABEL_FIELDS`, in dataset and condition order."""
    by_key: dict[str, Group] = {}
    for run in runs:
        key = json.dumps(_compared_fields(run.config), sort_keys=True)
        if key not in by_key:
            dataset, found = run.config["dataset"], protocol.components_of(run.config)
            by_key[key] = Group(dataset, protocol.condition_name(found, dataset), found, [])
        by_key[key].runs.append(run)
    groups = sorted(by_key.values(), key=_order)
    for group in groups:
        group.runs.sort(key=lambda r: (r.config["seed"], r.name))
        namesakes = [
            g for g in groups if (g.dataset, g.condition) == (group.dataset, group.condition)
        ]
        group.label = group.condition + _difference(group, namesakes)
    return groups


def _compared_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The config's fields by dotted name, less `LABEL_FIELDS`, with the evaluators in one form
    (`evals.<name>.<option>`, their short names folded in, the `SAVED_BEFORE` fields a config
    predates at the value it was trained with) whatever the age of config.json."""
    evals = evaluator_options(config)
    short = {field.split(".")[0] for fields in SHORT_NAMES.values() for field in fields.values()}
    rest = {k: v for k, v in config.items() if k != "evals" and k not in short}
    flat = with_saved_before(flatten({**rest, "evals": evals}))
    return {k: v for k, v in flat.items() if k not in LABEL_FIELDS}


def cutmix_pairs(groups: Sequence[Group]) -> list[tuple[Group, Group]]:
    """(without, with) for every two groups whose configs differ only in CutMix: the same
    fields outside `mix.*` and the same components apart from `cm` (Baseline and +CutMix,
    +label smoothing and +CutMix+label smoothing, ...), in `groups`' order."""

    def rest(group: Group) -> str:
        fields = _compared_fields(group.runs[0].config)
        return json.dumps({k: v for k, v in fields.items() if not k.startswith("mix.")})

    return [
        (without, with_cm)
        for with_cm in groups
        if "cm" in with_cm.components
        for without in groups
        if "cm" not in without.components
        and without.components == {k: v for k, v in with_cm.components.items() if k != "cm"}
        and rest(without) == rest(with_cm)
    ]


def _order(group: Group) -> tuple:
    datasets = list(DATASET_NAMES)
    dataset = datasets.index(group.dataset) if group.dataset in datasets else len(datasets)
    known = ABLATION.index(group.condition) if group.condition in ABLATION else len(ABLATION)
    return dataset, group.dataset, known, group.condition, group.runs[0].name


def _difference(group: Group, namesakes: list[Group]) -> str:
    """` [field=value, ...]`: the fields where `group` differs from a same-named group."""
    if len(namesakes) < 2:
        return ""
    flats = [_compared_fields(g.runs[0].config) for g in namesakes]
    mine = _compared_fields(group.runs[0].config)
    fields = sorted(
        k for k in set().union(*flats) if len({json.dumps(f.get(k)) for f in flats}) > 1
    )
    return " [" + ", ".join(f"{k}={mine.get(k)}" for k in fields) + "]"
