"""A SIGTERM remembered rather than obeyed at once: the train loop checkpoints at its next step
and returns; a sweep passes it on to the run it waits for and starts no other."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any


class SigtermFlag:
    """From construction to `restore`, a SIGTERM sets `received` (and calls `then`, when given)
    instead of ending the process."""

    def __init__(self, then: Callable[[], None] | None = None) -> None:
        self.received = False
        self._then = then
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = True
        if self._then is not None:
            self._then()

    def restore(self) -> None:
        """Puts back the handler that was there before."""
        signal.signal(signal.SIGTERM, self._previous)
