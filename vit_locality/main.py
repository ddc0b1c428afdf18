"""Train a ViT: `python -m vit_locality.main --config=configs/X.py[:arg] [--workdir=DIR]
[--config.field=value ...]`.

`--workdir` defaults to `runs/<config name>[_<arg>]`; running again with the same workdir
resumes. Bad input (a flag; a config file, argument, field or value; a data directory; a
workdir that holds another model) prints one line and exits with status 2 before any compute;
so does a disk that fills up during the run, whatever was being written (committed checkpoints
are kept).
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from vit_locality.cli import fail, parse_flags
from vit_locality.errors import UserError, out_of_space
from vit_locality.workdir import default_workdir

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/X.py:smoke.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default runs/<config>[_<arg>]).")
_MULTIHOST = flags.DEFINE_bool(
    "multihost",
    False,
    "Start JAX's distributed runtime first (TPU pods, multi-node GPU, or several processes "
    "with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID set).",
)
_COORDINATOR_TIMEOUT = flags.DEFINE_integer(
    "coordinator_timeout", 300, "--multihost: seconds to wait for the other processes."
)
_COLLECTIVE_TIMEOUT = flags.DEFINE_integer(
    "collective_timeout",
    600,
    "--multihost: seconds without progress after which the run ends, naming its step (a "
    "process stopped, died or hangs in a collective); 0: wait for ever.",
)
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    from vit_locality.parallel import multihost
    from vit_locality.train import TrainingDiverged, train_and_evaluate
    from vit_locality.workdir.checkpointing import quiet_failed_saves, quiet_save_wait_hints

    quiet_failed_saves()
    quiet_save_wait_hints()
    workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].config_filename)
    try:
        if _MULTIHOST.value:
            multihost.initialize(_COORDINATOR_TIMEOUT.value)
        train_and_evaluate(_CONFIG.value, workdir, collective_timeout_s=_COLLECTIVE_TIMEOUT.value)
    except UserError as e:
        fail(e)
    except TrainingDiverged as e:
        print(f"error: training diverged: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # metrics, TensorBoard, plots: the same one line when the disk is full
        if not (no_space := out_of_space(e)):
            raise
        print(
            f"error: writing to {workdir} failed ({no_space}); committed checkpoints are kept: "
            "free space and run again to resume",
            file=sys.stderr,
        )
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
