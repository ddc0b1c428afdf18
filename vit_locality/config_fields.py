"""Dotted config field names ("model.width") over ConfigDicts and config.json's nested dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_REQUIRED = object()

# Fields added after runs were saved that change what a run trains -> the value a config.json
# without the field was trained with: it resumes, and is reported, as if it held that value.
SAVED_BEFORE: dict[str, Any] = {"schedule": "cosine"}


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf field of `config` (a ConfigDict or nested dicts) by its dotted name."""
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def with_saved_before(flat: dict[str, Any]) -> dict[str, Any]:
    """`flat` (dotted names) with every field of `SAVED_BEFORE` it lacks set to that value."""
    return {**SAVED_BEFORE, **flat}


def get_field(config: Any, dotted: str, default: Any = _REQUIRED) -> Any:
    """`config["model"]["width"]` for "model.width"; `default` (when given) where a field is
    missing, e.g. in a run's config.json from before the field existed."""
    value = config
    for key in dotted.split("."):
        if default is not _REQUIRED and key not in value:
            return default
        value = value[key]
    return value
