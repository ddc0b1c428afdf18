"""Run directories: the default name, and the config a previous run saved there."""

from __future__ import annotations

import json
import pathlib

from vit_locality.errors import UserError


def default_workdir(config_arg: str) -> str:
    """`configs/cifar100_modern.py:smoke` -> `runs/cifar100_modern_smoke`."""
    path, _, arg = config_arg.partition(":")
    name = pathlib.Path(path).stem
    suffix = "".join(c if c.isalnum() or c in "=.-" else "_" for c in arg)
    return str(pathlib.Path("runs") / (f"{name}_{suffix}" if arg else name))


def read_saved_config(workdir: str | pathlib.Path) -> dict | None:
    """The `config.json` a run wrote into `workdir`, or None when there is none."""
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}); move the workdir away") from e
