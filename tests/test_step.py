"""The optimizer: AdamW decays the weight matrices and nothing else."""

import jax
import jax.numpy as jnp
import numpy as np

from vit_locality import train_state
from vit_locality.models.vit import ViT


def test_weight_decay_touches_the_kernels_only():
    """With zero gradients Adam's own update is 0, so one step moves a parameter by exactly
    -lr * wd * p when it is decayed and not at all otherwise: the Dense and patch-embedding
    kernels move; biases, LayerNorm scales, the position embedding and the CLS token stay."""
    model = ViT(num_classes=10, width=32, depth=2, num_heads=2, mlp_dim=64)
    params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    params = jax.tree.map(lambda p: p + 1.0, params)  # no zero-initialized leaf
    lr, wd = 0.1, 0.05
    tx = train_state.make_optimizer(lambda count: lr, weight_decay=wd, grad_clip_norm=1.0)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)

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
