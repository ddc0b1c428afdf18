"""Run a sweep of training runs one after another, skipping finished ones and resuming the rest.

    python -m vit_locality.sweep configs/sweeps/paper.py --root=runs/paper [--seeds=N]
        [--variant=smoke] [--print] [--multihost] [--config.x=y ...]

Run it from the repository root (config paths are relative to it). A sweep file is a Python file
with `get_sweep() -> list[dict]`, one dict per run:

    dict(name="cifar100_cm", config="configs/cifar100_ablation.py:cutmix=1",
         overrides={"mix.prob": 0.5})          # optional: --config.mix.prob=0.5

and optionally `SEEDS = N` (default 1; `--seeds=N` wins). Each run is expanded to one run per
seed k = 0..N-1, named `<name>_seed<k>`, trained with `--config.seed=k` in `ROOT/<name>_seed<k>`
as `python -m vit_locality.main --config=... --workdir=... <overrides> <global overrides>`. The
sweep's own `--config.x=y` flags are global overrides: they apply to every run and win over the
run's; `--variant=V` appends V to every config argument (`X.py` -> `X.py:V`, `X.py:a=1` ->
`X.py:a=1,V`), e.g. `--variant=smoke` for a quick pass over the whole sweep.

A run is **finished** when `metrics.jsonl` in its workdir holds, at the final step its `plan.json`
states, the train row and a row of every evaluator its config names (`val/prec@1`, `locality/...`;
`vit_locality.workdir.RunDir.is_finished`). Finished runs are skipped without starting a process;
any other run is started, and `vit_locality.main` resumes it from its latest checkpoint (with the
same config: a run never continues under another protocol or schedule), running the final
evaluations a kill cut short without training again. A finished run whose `locality.json` is not
of its final step (overwritten by `analyze --step`, or removed) is reported with the
`vit_locality.analyze` command that writes it.

Every config is resolved before anything runs: a sweep file or override that does not load is a
one-line `error:` and exit 2. A run that exits nonzero (or stops before its final step) is
reported and the sweep goes on to the next one; the sweep ends with a summary and exits 1 if any
run is not finished. SIGTERM is passed on to the running run (which checkpoints and exits) and
stops the sweep. `--print` prints the commands, one shell-quoted line per run (skipped or not),
to spread a sweep over several machines.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import pathlib
import re
import shlex
import signal
import subprocess
import sys
from typing import Any

import ml_collections
from etils import epath

from vit_locality.cli import ArgumentParser, fail, load_config
from vit_locality.errors import UserError
from vit_locality.sigterm import SigtermFlag
from vit_locality.workdir import RunDir

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]*")


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of a sweep.

    Attributes:
      name: the workdir's name under the sweep root, `<sweep entry name>_seed<k>`.
      config: `configs/X.py[:arg]`, the variant already applied.
      overrides: config field -> value text, in command-line order (run's, global, then seed).
    """

    name: str
    config: str
    overrides: dict[str, str]

    def args(self, root: str | pathlib.Path) -> list[str]:
        """The arguments of `python -m vit_locality.main`."""
        return [
            f"--config={self.config}",
            f"--workdir={epath.Path(root) / self.name}",
            *(f"--config.{field}={value}" for field, value in self.overrides.items()),
        ]


def load_sweep(path: str | pathlib.Path) -> tuple[list[dict[str, Any]], int]:
    """The entries of a sweep file and its `SEEDS` (1 when unset)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"sweep file {path} not found")
    spec = importlib.util.spec_from_file_location(f"sweep_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
        raise UserError(f"{path} defines no get_sweep()")
    return list(module.get_sweep()), int(getattr(module, "SEEDS", 1))


def with_variant(config: str, variant: str | None) -> str:
    """`X.py` -> `X.py:variant`; `X.py:a=1` -> `X.py:a=1,variant`; unchanged without variant."""
    if not variant:
        return config
    return f"{config},{variant}" if ":" in config else f"{config}:{variant}"


def expand(
    entries: list[dict[str, Any]],
    seeds: int,
    variant: str | None = None,
    global_overrides: dict[str, str] | None = None,
) -> list[Run]:
    """One Run per entry and seed, entry-major: `a_seed0, a_seed1, b_seed0, ...`."""
    global_overrides = global_overrides or {}
    if seeds < 1:
        raise UserError(f"--seeds={seeds} is not allowed: a positive integer")
    if "seed" in global_overrides:
        raise UserError("--config.seed is set by the sweep (runs get seeds 0..N-1): use --seeds")
    runs, names = [], set()
    for entry in entries:
        unknown = set(entry) - {"name", "config", "overrides"}
        if unknown or "name" not in entry or "config" not in entry:
            raise UserError(
                f"sweep entry {entry!r} is not allowed: a dict of name, config and optionally "
                "overrides"
            )
        name = entry["name"]
        if not _NAME.fullmatch(name) or name in names:
            raise UserError(f"sweep entry name {name!r} is not allowed: unique, a file name")
        names.add(name)
        overrides = {field: str(value) for field, value in entry.get("overrides", {}).items()}
        if "seed" in overrides:
            raise UserError(f"sweep entry {name!r} sets seed: the sweep sets it (--seeds)")
        for seed in range(seeds):
            runs.append(
                Run(
                    name=f"{name}_seed{seed}",
                    config=with_variant(entry["config"], variant),
                    overrides={**overrides, **global_overrides, "seed": str(seed)},
                )
            )
    return runs


def resolve_config(run: Run) -> ml_collections.ConfigDict:
    """The config `vit_locality.main` will train `run` with (file, argument and overrides)."""
    try:
        return load_config(run.config, run.overrides)
    except UserError as e:
        raise UserError(f"run {run.name}: {e}") from e


def locality_note(run_dir: RunDir) -> str:
    """For a finished run: "" when its locality.json is of the final step, else how to write it
    (the train loop writes it after the final eval, so a run killed in between lacks it)."""
    locality = run_dir.read_locality()
    if locality is not None and locality["step"] == run_dir.final_step():
        return ""
    return (
        " (no locality.json of the final step: "
        f"python -m vit_locality.analyze --workdir={run_dir.path})"
    )


def run_all(runs: list[Run], root: epath.Path, main_flags: tuple[str, ...] = ()) -> int:
    """Runs every unfinished run in turn (`main_flags` go to each `vit_locality.main`); prints a
    summary; returns the exit status (0 or 1)."""
    outcomes: dict[str, str] = {}
    child: subprocess.Popen | None = None

    def pass_on() -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    sigterm = SigtermFlag(then=pass_on)
    try:
        for i, run in enumerate(runs, start=1):
            if sigterm.received:
                break
            run_dir = RunDir(root / run.name)
            if run_dir.is_finished():
                outcomes[run.name] = "finished before (skipped)" + locality_note(run_dir)
                print(f"[{i}/{len(runs)}] {run.name}: {outcomes[run.name]}", flush=True)
                continue
            command = [sys.executable, "-m", "vit_locality.main", *run.args(root), *main_flags]
            print(f"[{i}/{len(runs)}] {run.name}: {shlex.join(command)}", flush=True)
            try:
                child = subprocess.Popen(command)
                code = child.wait()
            except KeyboardInterrupt:  # the run checkpoints on SIGTERM; wait for it
                pass_on()
                if child is not None:
                    child.wait()
                outcomes[run.name] = "interrupted (Ctrl-C)"
                break
            if code != 0:
                outcomes[run.name] = f"FAILED (exit {code})"
            elif run_dir.is_finished():
                outcomes[run.name] = "finished" + locality_note(run_dir)
            else:
                outcomes[run.name] = "stopped before its final step"
            print(f"[{i}/{len(runs)}] {run.name}: {outcomes[run.name]}", flush=True)
    finally:
        sigterm.restore()
    print(f"\nSweep summary ({root}):")
    for run in runs:
        print(f"  {run.name}: {outcomes.get(run.name, 'not started')}")
    done = sum(o.startswith("finished") for o in outcomes.values())
    print(f"{done}/{len(runs)} runs finished", flush=True)
    return 0 if done == len(runs) else 1


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, dict[str, str]]:
    """Sweep flags and the global `--config.field=value` overrides (field -> value text)."""
    parser = ArgumentParser(prog="python -m vit_locality.sweep", allow_abbrev=False)
    parser.add_argument("sweep_file", help="a Python file with get_sweep()")
    parser.add_argument("--root", required=True, help="run i trains in ROOT/<name_i>")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 per run (default: SEEDS or 1)")
    parser.add_argument("--variant", help="appended to every config argument, e.g. smoke")
    parser.add_argument("--print", action="store_true", help="print the commands, run nothing")
    parser.add_argument(
        "--multihost", action="store_true", help="pass --multihost to every run (TPU pods)"
    )
    args, rest = parser.parse_known_args(argv)
    overrides = {}
    for item in rest:
        field, eq, value = item.removeprefix("--config.").partition("=")
        if not item.startswith("--config.") or not eq or not field:
            parser.error(f"argument {item!r} not understood: use --config.FIELD=VALUE")
        overrides[field] = value
    return args, overrides


def main(argv: list[str]) -> int:
    args, global_overrides = parse_args(argv)
    try:
        entries, default_seeds = load_sweep(args.sweep_file)
        runs = expand(
            entries,
            default_seeds if args.seeds is None else args.seeds,
            args.variant,
            global_overrides,
        )
        for run in runs:  # every config loads before anything runs
            resolve_config(run)
    except UserError as e:
        fail(e)
    flags = ("--multihost",) if args.multihost else ()
    if args.print:
        for run in runs:
            print(shlex.join(["python", "-m", "vit_locality.main", *run.args(args.root), *flags]))
        return 0
    return run_all(runs, epath.Path(args.root), flags)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
