"""One-line checks of config fields: each bad value raises a `ConfigError` that names the field,
the value and what is allowed. Used by `vit_locality.validation` and by the protocol's
components (`vit_locality.augment.registry`), which check their own fields."""

from __future__ import annotations

import math
from typing import Any

import ml_collections

from vit_locality.config_fields import get_field
from vit_locality.errors import ConfigError


def fail(field: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"config.{field}={value!r} is not allowed: {allowed}")


def check_choice(config: ml_collections.ConfigDict, field: str, choices: tuple) -> None:
    value = get_field(config, field)
    if value not in choices:
        fail(field, value, "one of " + ", ".join(repr(c) for c in choices))


def check_positive(config: ml_collections.ConfigDict, field: str, integer: bool) -> None:
    value = get_field(config, field)
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not 0 < value < math.inf:
        fail(field, value, f"a positive {'integer' if integer else 'finite number'}")


def check_range(
    config: ml_collections.ConfigDict, field: str, low: float, high: float, high_open: bool
) -> None:
    value = get_field(config, field)
    inside = low <= value < high if high_open else low <= value <= high
    if not inside:
        fail(field, value, f"a number in [{low}, {high}{')' if high_open else ']'}")
