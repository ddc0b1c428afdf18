"""The training protocol's components, in one table: the configs switch them on from it
(`switch_on`, `set_protocol`), the CIFAR-100 ablation config picks its subsets from it, and the
report names a run's condition from its config with it (`components_of`, `condition_name`).

    key  name             title        on when                  switched on with
    aa   autoaugment      AutoAugment  aug.autoaugment          True (CIFAR-10 policy)
    cj   color_jitter     ColorJitter  aug.color_jitter > 0     0.4
    cm   cutmix           CutMix       mix.cutmix_alpha > 0     alpha 1.0, mix.prob 1.0
    mu   mixup            Mixup        mix.mixup_alpha > 0      alpha 0.8 (timm's), mix.prob 1.0
    re   random_erasing   Erasing      aug.random_erasing > 0   probability 1.0, pixel noise
    ls   label_smoothing  Label sm.    label_smoothing > 0      0.1

(CutMix and Mixup are on only while `mix.prob > 0` too.) Modern is `aa+cm+ls` on datasets with an
AutoAugment policy and `cj+cm+ls` on Tiny-ImageNet; Baseline is none of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import ml_collections

from vit_locality.config_fields import get_field
from vit_locality.data.datasets import DATASETS

PROTOCOLS = ("baseline", "modern")


@dataclasses.dataclass(frozen=True)
class Component:
    """One switch of the protocol.

    Attributes:
      key: its short name in condition names ("cm").
      name: its long name, the CIFAR-100 ablation config's argument ("cutmix").
      title: a table column title.
      switch: config field -> the value that switching the component on sets.
      on_fields: the fields that must all be > 0 (or True) for the component to be on.
      settings: short name -> config field, shown in a condition name where the value differs
        from `switch`'s ("cm(a=0.5)").
    """

    key: str
    name: str
    title: str
    switch: dict[str, Any]
    on_fields: tuple[str, ...]
    settings: dict[str, str] = dataclasses.field(default_factory=dict)

    def is_on(self, config: Mapping[str, Any]) -> bool:
        return all(get_field(config, field, 0) > 0 for field in self.on_fields)

    def settings_of(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {short: get_field(config, field, None) for short, field in self.settings.items()}

    def usual_settings(self) -> dict[str, Any]:
        return {short: self.switch[field] for short, field in self.settings.items()}


_CUTMIX = {"mix.cutmix_alpha": 1.0, "mix.prob": 1.0}
_MIXUP = {"mix.mixup_alpha": 0.8, "mix.prob": 1.0}
_ERASING = {"aug.random_erasing": 1.0, "aug.random_erasing_mode": "pixel"}
COMPONENTS = {
    c.key: c
    for c in (
        Component("aa", "autoaugment", "AutoAugment", {"aug.autoaugment": True},
                  ("aug.autoaugment",)),
        Component("cj", "color_jitter", "ColorJitter", {"aug.color_jitter": 0.4},
                  ("aug.color_jitter",), {"s": "aug.color_jitter"}),
        Component("cm", "cutmix", "CutMix", _CUTMIX, ("mix.cutmix_alpha", "mix.prob"),
                  {"a": "mix.cutmix_alpha", "p": "mix.prob"}),
        Component("mu", "mixup", "Mixup", _MIXUP, ("mix.mixup_alpha", "mix.prob"),
                  {"a": "mix.mixup_alpha", "p": "mix.prob"}),
        Component("re", "random_erasing", "Erasing", _ERASING, ("aug.random_erasing",),
                  {"p": "aug.random_erasing", "mode": "aug.random_erasing_mode"}),
        Component("ls", "label_smoothing", "Label sm.", {"label_smoothing": 0.1},
                  ("label_smoothing",), {"eps": "label_smoothing"}),
    )
}  # fmt: skip
BY_NAME = {c.name: c for c in COMPONENTS.values()}


def modern_components(dataset: str) -> tuple[str, ...]:
    """The keys of the Modern protocol on `dataset`."""
    augment = "aa" if DATASETS[dataset].has_autoaugment_policy else "cj"
    return (augment, "cm", "ls")


def switch_on(config: ml_collections.ConfigDict, key: str) -> None:
    """Sets the fields of component `key` to the values in the table."""
    for field, value in COMPONENTS[key].switch.items():
        *groups, leaf = field.split(".")
        target = config
        for group in groups:
            target = target[group]
        target[leaf] = value


def set_protocol(config: ml_collections.ConfigDict, protocol: str) -> ml_collections.ConfigDict:
    """Turns a Baseline config into `protocol` ("baseline": nothing to add; "modern": the
    dataset's Modern components) and labels it."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} unknown; allowed: {', '.join(PROTOCOLS)}")
    config.protocol = protocol
    if protocol == "modern":
        for key in modern_components(config.dataset):
            switch_on(config, key)
    return config


def components_of(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The components `config` (a ConfigDict or config.json's dict) has on, key -> settings;
    Mixup beside CutMix also records `switch` (mix.switch_prob)."""
    found = {k: c.settings_of(config) for k, c in COMPONENTS.items() if c.is_on(config)}
    if "cm" in found and "mu" in found:
        found["mu"]["switch"] = get_field(config, "mix.switch_prob", 0.5)
    return found


def condition_name(found: Mapping[str, Mapping[str, Any]], dataset: str) -> str:
    """`baseline`, `modern`, or the keys joined by `+`, settings other than the table's in
    brackets: `cm(a=0.5)+ls`."""
    parts = []
    for key, settings in found.items():
        usual = COMPONENTS[key].usual_settings()
        extra = [
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in settings.items()
            if usual.get(k) != v
        ]
        parts.append(f"{key}({','.join(extra)})" if extra else key)
    if not parts:
        return "baseline"
    name = "+".join(parts)
    modern = dataset in DATASETS and name == "+".join(modern_components(dataset))
    return "modern" if modern else name
