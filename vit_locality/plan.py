"""The run's step plan: how many steps an epoch, the run and its warmup take.

Every input pipeline and the schedule count epochs the same way: an epoch is
`steps_per_epoch(N, global_batch_size)` full global batches (the last partial batch is dropped),
and step `s` is batch `s % steps_per_epoch` of epoch `s // steps_per_epoch`.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from vit_locality.errors import ConfigError

# `config.schedule`: the learning rate after the warmup (configs/common.py documents them).
SCHEDULES = ("cosine", "constant")


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
    """Full global batches in one pass over `num_examples`."""
    return num_examples // global_batch_size


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """The run's step counts: from the config and the number of training examples."""

    steps_per_epoch: int  # full global batches per epoch (the remainder is dropped)
    total_steps: int
    warmup_steps: int

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, num_train: int) -> StepPlan:
        """Raises ConfigError when the batch or the warmup does not fit the training set."""
        spe = steps_per_epoch(num_train, config.batch_size)
        if spe == 0:
            raise ConfigError(
                f"config.batch_size={config.batch_size} is not allowed: at most the "
                f"{num_train} training examples"
            )
        total = config.total_steps or max(1, round(config.total_epochs * spe))
        warmup = round(config.warmup_epochs * spe)
        if warmup >= total:
            raise ConfigError(
                f"config.warmup_epochs={config.warmup_epochs} is not allowed: fewer than the "
                f"{total / spe:.2f} epochs of training ({warmup} >= {total} steps)"
            )
        return cls(spe, total, warmup)

    @classmethod
    def from_json(cls, saved: dict[str, int]) -> StepPlan:
        """A saved plan.json; fields of older plans (the evaluators' periods) are left out."""
        return cls(**{field.name: saved[field.name] for field in dataclasses.fields(cls)})
