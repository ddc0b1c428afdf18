"""The optimizer: AdamW decays the weight matrices and nothing else; the schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vit_locality import train_state
from vit_locality.models.vit import ViT


def test_weight_decay_touches_the_kernels_only():
    """With zero gradients Adam's own update is 0, so one step moves a parameter by exactly
    -lr * wd * p when it is decayed and not at all otherwise: the Dense and patch-embedding
    kernels move; biases, LayerNorm scales, the position embedding and the CLS token stay."""
    model = ViT(num_classes=10, width=32, depth=2, num_heads=2, mlp_dim=64)
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    params = jax.tree.map(lambda p: p + 1.0, params)  # no zero-initialized leaf
    lr, wd = 0.1, 0.05
    tx = train_state.make_optimizer(lambda count: lr, weight_decay=wd, grad_clip_norm=1.0)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = jax.jit(tx.update)(zeros, jax.jit(tx.init)(params), params)  # not op by op

    moved = {}
    for path, update in jax.tree_util.tree_leaves_with_path(updates):
        name = jax.tree_util.keystr(path)
        param = params
        for key in path:
            param = param[key.key]
        decayed = np.allclose(update, -lr * wd * param, rtol=1e-6)
        assert decayed or not np.any(update), name
        moved[name] = decayed
    assert {name for name, decayed in moved.items() if decayed} == {
        name for name in moved if name.endswith("['kernel']")
    }
    assert not moved["['cls']"] and not moved["['pos_embedding']"]


def test_schedules_against_their_arithmetic():
    """Warmup 0 -> peak over 100 steps (peak * s / 100), then cosine to 0 at step 1,000
    (peak * (1 + cos(pi * (s - 100) / 900)) / 2), or the peak from step 100 on (`constant`)."""
    peak, warmup, total = 1e-3, 100, 1000
    cosine = train_state.make_schedule(peak, warmup, total)
    constant = train_state.make_schedule(peak, warmup, total, "constant")
    for step in (0, 1, 50, 99, 100):  # the same warmup
        assert np.isclose(cosine(step), peak * step / warmup, rtol=1e-5, atol=0)
        assert np.isclose(constant(step), peak * step / warmup, rtol=1e-5, atol=0)
    for step in (101, 550, 999, 1000):
        expected = peak * (1 + np.cos(np.pi * (step - warmup) / (total - warmup))) / 2
        assert np.isclose(cosine(step), expected, rtol=1e-5, atol=peak * 1e-6)
    assert np.isclose(cosine(550), peak / 2, rtol=1e-5) and cosine(1000) == 0.0
    for step in (100, 101, 550, 1000, 8000):
        assert constant(step) == np.float32(peak)


def test_the_config_picks_the_schedule_and_cosine_is_optax_s_warmup_cosine():
    from configs import common
    from vit_locality.plan import StepPlan

    config = common.experiment("cifar10", "baseline", None)
    plan = StepPlan(steps_per_epoch=39, total_steps=8000, warmup_steps=195)
    default, _ = train_state.optimizer(config, plan)
    optax_s = optax.warmup_cosine_decay_schedule(
        0.0, config.lr, warmup_steps=195, decay_steps=8000, end_value=0.0
    )
    steps = jnp.arange(0, 8001, 97)
    assert config.schedule == "cosine"
    assert np.array_equal(jax.vmap(default)(steps), jax.vmap(optax_s)(steps))  # bit for bit
    config.schedule = "constant"
    constant, _ = train_state.optimizer(config, plan)
    assert float(constant(4000)) == np.float32(config.lr) and float(default(4000)) < config.lr
    del config.schedule  # a config.json from before the field trains as it did: cosine
    saved, _ = train_state.optimizer(config, plan)
    assert np.array_equal(jax.vmap(saved)(steps), jax.vmap(optax_s)(steps))
