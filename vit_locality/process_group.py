"""Child processes that stop at a time limit, whole: a child's own children stop with it.

`run` starts a command (`run_together` several at once, under one limit) in a new process group
(`own_group=True`) and, at its limit or when the caller is interrupted (an exception, e.g. raised
by the caller's SIGTERM handler), sends the whole group SIGTERM, then SIGKILL after `grace_s`:
`subprocess.run(timeout=...)` kills only the direct child, and a grandchild left behind would keep
the accelerator. With `own_group=False` the child stays in the caller's group (so a caller
stopped by its own parent takes the child with it) and the signals go to the child alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import IO


def run(
    command: Sequence[str],
    *,
    timeout_s: float,
    cwd: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    output: IO | None = None,
    own_group: bool = True,
    grace_s: float = 10.0,
) -> int | None:
    """Runs `command` for at most `timeout_s` seconds (then `grace_s` more after SIGTERM), with
    stdout and stderr into `output` (an open file; inherited when None). Returns its exit code,
    or None when it was stopped at the limit. Nothing of it outlives the call."""
    (code,) = run_together(
        [command], timeout_s=timeout_s, cwd=cwd, env=env, outputs=[output],
        own_group=own_group, grace_s=grace_s,
    )  # fmt: skip
    return code


def run_together(
    commands: Sequence[Sequence[str]],
    *,
    timeout_s: float,
    cwd: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    outputs: Sequence[IO | None] | None = None,
    own_group: bool = True,
    grace_s: float = 10.0,
) -> list[int | None]:
    """`run` for several commands at once, under one limit: each runs until it exits or the
    limit comes, when every one still running gets SIGTERM, then SIGKILL after `grace_s`.
    Returns each one's exit code, None for those stopped at the limit."""
    deadline = time.monotonic() + max(timeout_s, 0.0)
    children = [
        subprocess.Popen(
            list(command),
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=own_group,
        )
        for command, output in zip(commands, outputs or [None] * len(commands), strict=True)
    ]
    codes: list[int | None] = [None] * len(children)
    try:
        for i, child in enumerate(children):
            try:
                codes[i] = child.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                pass
        return codes
    finally:
        running = [child for child in children if child.poll() is None]
        for child in running:
            _signal(child, signal.SIGTERM, own_group)
        grace_end = time.monotonic() + grace_s
        for child in running:
            try:
                child.wait(timeout=max(grace_end - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                pass
        for child in children:
            _signal(child, signal.SIGKILL, own_group)  # also what the child left running
            child.wait()


def _signal(child: subprocess.Popen, signum: int, own_group: bool) -> None:
    try:
        if own_group:
            os.killpg(child.pid, signum)
        elif child.poll() is None:
            child.send_signal(signum)
    except ProcessLookupError:  # the group is already empty
        pass


class Stopped(Exception):
    """This process got SIGTERM, after `raise_on_sigterm`."""


def raise_on_sigterm() -> None:
    """From now on a SIGTERM raises `Stopped` where the main thread is: a child that `run` waits
    for is then stopped with its group, and the caller packs what it has."""

    def stop(signum: int, frame: object) -> None:
        raise Stopped

    signal.signal(signal.SIGTERM, stop)
