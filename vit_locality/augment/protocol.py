"""The protocols and the condition names, from the components of `registry`: the configs switch
components on (`switch_on`, `set_protocol`), the CIFAR-100 ablation config picks its subsets by
name, and the report names a run's condition from its config (`components_of`,
`condition_name`).

Today's components that conditions name (each module of `vit_locality.augment` says its fields):

    key  name             title        on when                  switched on with
    aa   autoaugment      AutoAugment  aug.autoaugment          True (CIFAR-10 policy)
    cj   color_jitter     ColorJitter  aug.color_jitter > 0     0.4
    re   random_erasing   Erasing      aug.random_erasing > 0   probability 1.0, pixel noise
    ls   label_smoothing  Label sm.    label_smoothing > 0      0.1
    cm   cutmix           CutMix       mix.cutmix_alpha > 0     alpha 1.0, mix.prob 1.0
    mu   mixup            Mixup        mix.mixup_alpha > 0      alpha 0.8 (timm's), mix.prob 1.0

(CutMix and Mixup are on only while `mix.prob > 0` too.) Modern is `aa+cm+ls` on datasets with an
AutoAugment policy and `cj+cm+ls` on Tiny-ImageNet; Baseline is none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections

from vit_locality.augment import registry
from vit_locality.config_fields import get_field
from vit_locality.datasets import DATASETS

PROTOCOLS = ("baseline", "modern")


def modern_components(dataset: str) -> tuple[str, ...]:
    """The keys of the Modern protocol on `dataset`."""
    augment = "aa" if DATASETS[dataset].has_autoaugment_policy else "cj"
    return (augment, "cm", "ls")


def switch_on(config: ml_collections.ConfigDict, key: str) -> None:
    """Sets the fields of the component with condition key `key` to its `switch` values."""
    registry.set_fields(config, registry.by_key()[key].switch)


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
    found = {k: c.settings_of(config) for k, c in registry.by_key().items() if c.is_on(config)}
    if "cm" in found and "mu" in found:
        found["mu"]["switch"] = get_field(config, "mix.switch_prob", 0.5)
    return found


def condition_name(found: Mapping[str, Mapping[str, Any]], dataset: str) -> str:
    """`baseline`, `modern`, or the keys joined by `+`, settings other than the table's in
    brackets: `cm(a=0.5)+ls`."""
    parts = []
    for key, settings in found.items():
        usual = registry.by_key()[key].usual_settings()
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
