"""Where scalars go: `metrics.jsonl`, TensorBoard event files, and the progress line.

TensorBoard events are written with the `tensorboard` package's record writer, without importing
TensorFlow for a local workdir (tensorboard's own `EventFileWriter` opens files through
TensorFlow whenever it is installed: seconds of imports at every start, even of a run whose input
never touches TensorFlow); a gs:// workdir's events go through `EventFileWriter`, which reaches
the bucket. Without `tensorboard` only the JSON lines are written.

Each step is recorded once, however often the run was killed and resumed: a writer opened at a
resumed step drops the rows a killed session wrote after it (the resumed run writes them again),
in metrics.jsonl and in TensorBoard, whose event files are written anew from the rows kept (their
wall times become the resume's time).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import socket
import time
from typing import Any

from etils import epath

from vit_locality.workdir import RunDir, is_remote


class MetricWriter:
    """Writes one JSON object per call to the run's `metrics.jsonl` and mirrors it to
    TensorBoard. Only the process that owns the workdir (process 0) should create one with
    `enabled=True`.

    `resumed_step` is the step the run's state was restored at (0 for a fresh start): rows of
    later steps are dropped when the writer opens. metrics.jsonl is replaced, never appended to
    in place (a bucket has no append): locally it is rewritten once and then appended to; on a
    remote workdir the whole file is rewritten at every call.
    """

    def __init__(self, run_dir: RunDir, enabled: bool = True, *, resumed_step: int = 0):
        self.enabled = enabled
        self._tensorboard = None
        if not enabled:
            return
        self._path = run_dir.metrics_file
        kept = [row for row in run_dir.read_metrics() if row["step"] <= resumed_step]
        self._lines = [json.dumps(row) + "\n" for row in kept]
        partial = self._path.with_name(self._path.name + ".tmp")
        partial.write_text("".join(self._lines))
        partial.replace(self._path)  # a reader never sees half a file
        self._jsonl = None if is_remote(self._path) else self._path.open("a")  # close() closes
        try:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError:
            return
        for events in run_dir.tensorboard_dir.glob("events.out.tfevents.*"):
            events.unlink()
        if is_remote(run_dir.tensorboard_dir):
            self._tensorboard = EventFileWriter(str(run_dir.tensorboard_dir))
        else:
            self._tensorboard = _LocalEventFile(run_dir.tensorboard_dir)
        for row in kept:
            self._write_tensorboard(row["step"], row)

    def write(self, step: int, scalars: dict[str, Any]) -> None:
        """Records `scalars` at `step`; non-finite numbers are written as strings ("nan")."""
        if not self.enabled:
            return
        row = {"step": int(step), **{k: _jsonable(v) for k, v in scalars.items()}}
        self._lines.append(json.dumps(row) + "\n")
        if self._jsonl is None:
            self._path.write_text("".join(self._lines))
        else:
            self._jsonl.write(self._lines[-1])
            self._jsonl.flush()
        if self._tensorboard is not None:
            self._write_tensorboard(step, scalars)

    def _write_tensorboard(self, step: int, scalars: dict[str, Any]) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        values = [
            summary_pb2.Summary.Value(tag=k, simple_value=float(v))
            for k, v in scalars.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k != "step"
        ]
        if values:
            event = event_pb2.Event(
                wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)
            )
            self._tensorboard.add_event(event)
            self._tensorboard.flush()

    def close(self) -> None:
        if self.enabled:
            if self._jsonl is not None:
                self._jsonl.close()
            if self._tensorboard is not None:
                self._tensorboard.close()


class _LocalEventFile:
    """A TensorBoard event file in a local directory, as `EventFileWriter` names and starts it
    (`events.out.tfevents.TIME.HOST.PID.0`, a first `file_version` event), its records framed by
    tensorboard's `RecordWriter` (length, data, masked CRC-32C), with no TensorFlow."""

    def __init__(self, directory: epath.Path):
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        directory.mkdir(parents=True, exist_ok=True)
        now = time.time()
        name = f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}.0"
        self._records = RecordWriter((directory / name).open("wb"))
        self.add_event(event_pb2.Event(wall_time=now, file_version="brain.Event:2"))

    def add_event(self, event) -> None:
        self._records.write(event.SerializeToString())

    def flush(self) -> None:
        self._records.flush()

    def close(self) -> None:
        self._records.close()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def progress_line(
    step: int, total_steps: int, scalars: dict[str, float], seconds_per_step: float
) -> str:
    """The console line of a log step, e.g.
    `step 120/300 (40.0%) | epoch 1.52 | loss 1.9748 | lr 9.2e-04 | 525 img/s | ETA 0:00:22`."""
    eta = datetime.timedelta(seconds=round(max(total_steps - step, 0) * seconds_per_step))
    parts = [f"step {step}/{total_steps} ({100 * step / total_steps:.1f}%)"]
    if "epoch" in scalars:
        parts.append(f"epoch {scalars['epoch']:.2f}")
    if "train/loss" in scalars:
        parts.append(f"loss {scalars['train/loss']:.4f}")
    if "train/lr" in scalars:
        parts.append(f"lr {scalars['train/lr']:.1e}")
    if "train/img_per_s" in scalars:
        parts.append(f"{scalars['train/img_per_s']:.0f} img/s")
    parts.append(f"ETA {eta}")
    return " | ".join(parts)
