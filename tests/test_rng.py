"""Random streams: no two of a run's streams (init, each step's mixing and erasing, the on-device
input's order and crop/flip) draw from the same key, nor the keys that mixing splits off."""

import jax
import numpy as np

from vit_locality import rng
from vit_locality.augment import registry


def test_no_two_streams_share_a_key():
    seed, counters = 0, range(64)
    keys = {"init": [rng.init_key(seed)]}
    streams = {c.name: c.stream for c in registry.components() if c.stage == "step"}
    assert streams == {
        "random_erasing": 1, "label_smoothing": 2, "cutmix": 0, "mixup": 0, "resizemix": 3,
    }  # fmt: skip
    step_key = {name: lambda s, i=i: jax.random.fold_in(rng.step_key(seed, s), i)
                for name, i in (("mix", 0), ("erase", 1), ("resizemix", 3))}  # fmt: skip
    for name in step_key:
        keys[name] = [step_key[name](s) for s in counters]
    # mixing's own draws (apply, switch, CutMix lam, Mixup lam, box), erasing's per-image keys,
    # ResizeMix's four
    keys["mix/split"] = [k for s in counters for k in jax.random.split(step_key["mix"](s), 5)]
    keys["erase/split"] = [k for s in counters for k in jax.random.split(step_key["erase"](s), 8)]
    keys["resizemix/split"] = [
        k for s in counters for k in jax.random.split(step_key["resizemix"](s), 4)
    ]
    keys["order"] = [rng.permutation_key(seed, e) for e in counters]
    keys["augment"] = [rng.augment_key(seed, p) for p in counters]
    data = {
        name: {tuple(np.asarray(jax.random.key_data(k)).tolist()) for k in ks}
        for name, ks in keys.items()
    }
    assert all(len(data[name]) == len(keys[name]) for name in keys)  # distinct within a stream
    union = set().union(*data.values())
    assert len(union) == sum(len(d) for d in data.values())  # and across streams


def test_streams_depend_on_the_seed():
    assert not np.array_equal(
        jax.random.key_data(rng.step_key(0, 5)),
        jax.random.key_data(rng.step_key(1, 5)),
    )
