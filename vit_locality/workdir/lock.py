"""One writer per workdir: `lock.json`, taken before a run touches its checkpoints.

The file says who holds the workdir: `{"host", "pid", "since", "heartbeat"}` (times in UTC, ISO
8601). The holder rewrites `heartbeat` every `HEARTBEAT_S` seconds from a daemon thread and
removes the file when it ends. A lock is stale, and taken over with one line on stderr, when its
heartbeat is older than `STALE_AFTER_S` seconds, or, on the same host, when its pid is no longer
alive or is this process's own.

A local lock is created with `O_CREAT | O_EXCL`, so of two runs started at once exactly one gets
it. A bucket has no exclusive create: there the lock is written, then read back after
`SETTLE_S` seconds, and the run goes on only if it still names this process.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import socket
import sys
import threading
import time

from etils import epath

from vit_locality.errors import UserError
from vit_locality.workdir import is_remote

HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0
SETTLE_S = 2.0
_HELD: set[str] = set()  # the lock files this process holds


def _iso(seconds: float) -> str:
    """A POSIX time as UTC ISO 8601, to the second."""
    utc = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return utc.isoformat(timespec="seconds")


def _now() -> str:
    return _iso(time.time())


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds a workdir: host name, process id, and when it took the lock and last said it
    was alive (UTC, ISO 8601)."""

    host: str
    pid: int
    since: str
    heartbeat: str

    @classmethod
    def this_process(cls) -> Holder:
        now = _now()
        return cls(socket.gethostname(), os.getpid(), now, now)

    def is_alive(self, held_here: bool) -> bool:
        """Whether the holder may still be running: its heartbeat is recent and, on this host,
        its pid lives; when that pid is this process's, only if this process holds the lock
        (`held_here`): a container restarted on the same host gets the pid of its killed
        predecessor."""
        if self.heartbeat_age_s() >= STALE_AFTER_S:
            return False
        if self.host == socket.gethostname() and self.pid > 0:
            if self.pid == os.getpid():
                return held_here
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:  # alive, another user's
                return True
        return True

    def heartbeat_age_s(self) -> float:
        """Seconds since the last heartbeat (infinite when it cannot be read)."""
        try:
            beat = datetime.datetime.fromisoformat(self.heartbeat).timestamp()
        except ValueError:
            return float("inf")
        return time.time() - beat

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self)) + "\n"


class WorkdirLock:
    """Held from `acquire` to `release`; one per run (process 0 of it)."""

    def __init__(self, path: epath.Path, holder: Holder):
        self._path, self._holder = path, holder
        self._stop = threading.Event()
        self._beating = threading.Thread(target=self._beat, daemon=True)
        self._beating.start()

    @classmethod
    def acquire(cls, path: str | epath.Path) -> WorkdirLock:
        """Takes the lock file `path` (its directory is created); UserError naming the holder
        when a live one has it."""
        path = epath.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        holder = Holder.this_process()
        for _ in range(2):  # the second try follows a stale lock's removal
            if _create(path, holder.to_json()):
                _HELD.add(str(path))
                return cls(path, holder)
            current = _read(path)
            if current is None:  # removed between the two calls: try again
                continue
            if current.is_alive(held_here=str(path) in _HELD):
                raise UserError(
                    f"workdir {path.parent} is in use by {current.host} pid {current.pid} since "
                    f"{current.since} ({path}); wait for it to end, or use another --workdir"
                )
            print(
                f"warning: {path} was held by {current.host} pid {current.pid} since "
                f"{current.since}, which is gone; taking it over",
                file=sys.stderr,
                flush=True,
            )
            path.unlink(missing_ok=True)
        raise UserError(f"workdir {path.parent}: another run took {path} meanwhile; try again")

    def release(self) -> None:
        """Stops the heartbeat and removes the lock file if it still names this process."""
        self._stop.set()
        self._beating.join()
        _HELD.discard(str(self._path))
        if _read(self._path) == self._holder:
            self._path.unlink(missing_ok=True)

    def _beat(self) -> None:
        """Every HEARTBEAT_S, the lock file anew with the time; a write that fails (a full disk,
        the network) is skipped, and the beat stops when the file no longer names this run."""
        while not self._stop.wait(HEARTBEAT_S):
            if _read(self._path) != self._holder:
                return
            beat = dataclasses.replace(self._holder, heartbeat=_now())
            partial = self._path.with_name(f"{self._path.name}.{beat.pid}.tmp")
            try:
                partial.write_text(beat.to_json())
                partial.replace(self._path)  # a reader never sees half a file
            except OSError:
                continue
            self._holder = beat


def _create(path: epath.Path, text: str) -> bool:
    """Writes `text` to `path` unless the file exists; whether it was written."""
    if is_remote(path):
        if path.exists():
            return False
        path.write_text(text)
        time.sleep(SETTLE_S)  # a run that wrote at the same time has overwritten it by now
        return path.read_text() == text
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


def _read(path: epath.Path) -> Holder | None:
    """The holder `path` names; None when there is no such file. A file not (yet, or no longer)
    whole names an unknown holder whose heartbeat is the file's modification time."""
    try:
        text = path.read_text()
        modified = _iso(path.stat().mtime)
    except FileNotFoundError:
        return None
    try:
        return Holder(**json.loads(text))
    except (json.JSONDecodeError, TypeError):
        return Holder("an unknown host", 0, modified, modified)
