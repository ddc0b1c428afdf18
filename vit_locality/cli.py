"""Command lines: every mistake in the flags or the config ends as one line on stderr and exit 2.

`main` and `analyze` parse with absl (`app.run(main, flags_parser=parse_flags)`), `sweep` and
`report` with `ArgumentParser`. A config is `--config=FILE[:ARG]` plus `--config.FIELD=VALUE`
overrides, read by ml-collections; `load_config` resolves it (for `main`, and for each run of a
sweep) and turns ml-collections' and absl's tracebacks into one line that names what is allowed:
the config files that exist, the arguments the file accepts, the closest field names, the type.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import pathlib
import re
import sys
import warnings
from collections.abc import Mapping
from typing import NoReturn

import ml_collections
from absl import flags
from ml_collections import config_flags

from vit_locality.config_fields import flatten
from vit_locality.errors import UserError, first_line

_KINDS = {bool: "True or False", int: "an integer", float: "a number", str: "a string"}


def fail(message: object) -> NoReturn:
    """Prints `error: message` on stderr and exits with status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        fail(message)


def field_names(config: ml_collections.ConfigDict) -> list[str]:
    """Every dotted field of `config`, groups included: "lr", "model", "model.width", ..."""
    leaves = list(flatten(config))
    groups = {
        ".".join(parts[:i])
        for parts in (leaf.split(".") for leaf in leaves)
        for i in range(1, len(parts))
    }
    return leaves + sorted(groups)


def config_files(folder: pathlib.Path) -> list[str]:
    """The experiment configs in `folder` (configs/ when it does not exist or is the cwd)."""
    if not folder.is_dir() or folder == pathlib.Path("."):
        folder = pathlib.Path("configs")
    return sorted(
        str(path)
        for path in folder.glob("*.py")
        if path.name not in ("__init__.py", "common.py") and "def get_config" in path.read_text()
    )


def _parse(spec: str, overrides: Mapping[str, str]) -> ml_collections.ConfigDict:
    argv = [f"--config.{field}={value}" for field, value in overrides.items()]
    argv = ["vit_locality", f"--config={spec}", *argv]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, sys_argv=argv)
    with warnings.catch_warnings():  # ml-collections loads config files with load_module()
        warnings.simplefilter("ignore", DeprecationWarning)
        flag_values(argv)
        return flag_values.config


def _last_line(error: BaseException) -> str:
    """The last line of a message that embeds a traceback, without its exception's type name."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else type(error).__name__
    kind, colon, rest = last.partition(": ")
    return rest if colon and kind.isidentifier() and kind.endswith(("Error", "Exception")) else last


def load_config(spec: str, overrides: Mapping[str, str] | None = None) -> ml_collections.ConfigDict:
    """The config of `--config=spec` with `--config.FIELD=VALUE` for each of `overrides`, as
    `vit_locality.main` resolves it. Raises UserError (one line) for a file that does not exist,
    a config argument the file does not accept, a field it does not have, or a value that does
    not parse as the field's type."""
    overrides = dict(overrides or {})
    path = spec.partition(":")[0]
    if not pathlib.Path(path).is_file():
        configs = ", ".join(config_files(pathlib.Path(path).parent))
        raise UserError(f"--config={spec}: no config file {path}; configs: {configs}")
    try:
        base = _parse(spec, {})
    except (flags.Error, OSError) as e:  # get_config raised: the reason is the last line
        raise UserError(f"--config={spec}: {_last_line(e)}") from e
    if not overrides:
        return base
    names = field_names(base)
    for field in overrides:
        if field not in names:
            closest = difflib.get_close_matches(field, names, n=3, cutoff=0.6)
            hint = "closest: " + ", ".join(f"config.{name}" for name in closest)
            raise UserError(
                f"config.{field} is not a field of {path}; "
                + (hint if closest else "every field is documented in configs/common.py")
            )
    try:
        return _parse(spec, overrides)
    except flags.Error as e:  # "flag --config.F=V: could not convert ..."
        field = next(f for f in overrides if f"--config.{f}=" in str(e))
        *groups, name = field.split(".")
        kind = functools.reduce(ml_collections.ConfigDict.__getitem__, groups, base).get_type(name)
        allowed = _KINDS.get(kind, f"one field at a time, e.g. --config.{field}.FIELD=VALUE")
        raise UserError(f"config.{field}={overrides[field]!r} is not allowed: {allowed}") from e


def config_args(args: list[str]) -> tuple[str | None, dict[str, str]]:
    """`--config=SPEC` (or `--config SPEC`) and the `--config.FIELD=VALUE` overrides in `args`;
    a boolean override without a value (`--config.aug.flip`, `--noconfig.aug.flip`) counts too."""
    spec, overrides = None, {}
    for i, arg in enumerate(args):
        name, eq, value = arg.lstrip("-").partition("=")
        if name == "config":
            spec = value if eq else (args[i + 1] if i + 1 < len(args) else None)
        elif name.startswith(("config.", "noconfig.")):
            field = name.split(".", 1)[1]
            if not eq:  # `--config.F VALUE`, or a boolean switched on or off by name
                following = args[i + 1] if i + 1 < len(args) else "-"
                value = str(not name.startswith("no")) if following.startswith("-") else following
            overrides[field] = value
    return spec, overrides


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, for `app.run(main, flags_parser=parse_flags)`: a wrong flag, a
    missing required one, a value of the wrong type and (where `--config` is defined) any
    mistake in the config end as one line and exit 2."""
    try:
        if "config" in flags.FLAGS:
            spec, overrides = config_args(argv[1:])
            if spec is None:
                configs = ", ".join(config_files(pathlib.Path("configs")))
                raise UserError(f"--config is required: one of {configs} (with :ARG for a variant)")
            load_config(spec, overrides)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return flags.FLAGS(argv)
    except UserError as e:
        fail(e)
    except flags.Error as e:  # e.g. "Unknown command line flag 'workdirr'. Did you mean: workdir ?"
        fail(_absl_message(e))


def _absl_message(error: flags.Error) -> str:
    """absl's message, in the form of the config errors where it says which flag and value."""
    # A multi-flag validator's message comes as "flags a=None, b=None: MESSAGE".
    line = first_line(error, limit=100_000)
    message = re.sub(r"^flags (\w+=.*?, )*\w+=.*?: ", "", line)[:200]
    if required := re.search(r"Flag (--\w+) must have a value other than None", message):
        return f"{required.group(1)} is required"
    bad_value = re.match(r"flag --(\w+)=(.*?): ", message)
    if bad_value and bad_value.group(1) in flags.FLAGS:
        name, value = bad_value.groups()
        kind = {"int": int, "float": float, "bool": bool}.get(flags.FLAGS[name].flag_type(), str)
        return f"--{name}={value!r} is not allowed: {_KINDS[kind]}"
    return message
