"""Random streams: no two of a run's streams (init, each step's mixing and erasing, the on-device
input's order and crop/flip) draw from the same key, nor the keys that mixing splits off."""

import jax
import numpy as np

from vit_locality import rng


def test_no_two_streams_share_a_key():
    seed, counters = 0, range(64)
    keys = {"init": [rng.init_key(seed)]}
    for name in ("mix", "erase"):
        keys[name] = [rng.step_keys(seed, s)[name] for s in counters]
    # mixing's own draws (apply, switch, CutMix lam, Mixup lam, box) and erasing's per-image keys
    keys["mix/split"] = [
        k for s in counters for k in jax.random.split(rng.step_keys(seed, s)["mix"], 5)
    ]
    keys["erase/split"] = [
        k for s in counters for k in jax.random.split(rng.step_keys(seed, s)["erase"], 8)
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
        jax.random.key_data(rng.step_keys(0, 5)["mix"]),
        jax.random.key_data(rng.step_keys(1, 5)["mix"]),
    )
