"""The ViT: parameter count against a hand count, shapes, attention outputs, dtypes."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vit_locality.models import ViT


def hand_count(*, patch, channels, width, depth, mlp, classes, tokens, cls_token) -> int:
    embed = patch * patch * channels * width + width
    pos = tokens * width
    block = (
        2 * width  # norm1
        + 3 * (width * width + width)  # qkv
        + width * width
        + width  # out projection
        + 2 * width  # norm2
        + width * mlp
        + mlp  # fc1
        + mlp * width
        + width  # fc2
    )
    return (
        embed
        + pos
        + (width if cls_token else 0)
        + depth * block
        + 2 * width
        + width * classes
        + classes
    )


def count(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))


def test_default_size_matches_hand_count():
    model = ViT(num_classes=100)
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    expected = hand_count(
        patch=4, channels=3, width=192, depth=9, mlp=384, classes=100, tokens=64, cls_token=True
    )
    assert count(params) == expected == 2_714_788  # 9408 + 12288 + 192 + 9 * 297024 + 384 + 19300


def test_gap_model_has_no_cls_token():
    model = ViT(num_classes=10, width=32, depth=2, num_heads=2, mlp_dim=64, pool="gap")
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    assert "cls" not in params
    expected = hand_count(
        patch=4, channels=1, width=32, depth=2, mlp=64, classes=10, tokens=49, cls_token=False
    )
    assert count(params) == expected


@pytest.mark.parametrize("pool,prefix", [("cls", 1), ("gap", 0)])
def test_outputs_and_attention(pool, prefix):
    model = ViT(num_classes=10, width=32, depth=3, num_heads=4, mlp_dim=64, pool=pool)
    images = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    params = jax.jit(model.init)(jax.random.key(0), images)["params"]
    logits, out = jax.jit(partial(model.apply, return_attention=True))({"params": params}, images)
    tokens = prefix + 64
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    assert out["stem"].shape == (2, 8, 8, 32)
    assert out["encoded"].shape == (2, tokens, 32)
    assert out["pre_logits"].shape == (2, 32)
    assert len(out["attention"]) == 3
    for probs in out["attention"]:
        assert probs.shape == (2, 4, tokens, tokens) and probs.dtype == jnp.float32
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
        assert (probs >= 0).all()
    _, plain = jax.jit(model.apply)({"params": params}, images)
    assert "attention" not in plain


def test_attention_matches_direct_softmax():
    """The returned probabilities are softmax(q k^T / sqrt(d)) of the block's own projections."""
    model = ViT(num_classes=10, width=16, depth=1, num_heads=2, mlp_dim=32)
    images = jax.random.normal(jax.random.key(2), (1, 8, 8, 3))
    params = jax.jit(model.init)(jax.random.key(0), images)["params"]
    _, out = jax.jit(partial(model.apply, return_attention=True))({"params": params}, images)
    # Recompute the first block's input by hand: embedding, position, CLS.
    p = params
    patches = images.reshape(1, 2, 4, 2, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(1, 4, 48)
    kernel = p["embedding"]["kernel"].reshape(48, 16)
    x = patches @ kernel + p["embedding"]["bias"] + p["pos_embedding"]
    x = jnp.concatenate([jnp.broadcast_to(p["cls"], (1, 1, 16)), x], axis=1)
    ln = p["block00"]["norm1"]
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    h = (x - mu) / jnp.sqrt(var + 1e-6) * ln["scale"] + ln["bias"]
    qkv = jnp.einsum("btd,dshk->btshk", h, p["block00"]["attn"]["qkv"]["kernel"])
    qkv = qkv + p["block00"]["attn"]["qkv"]["bias"]
    q, k = qkv[:, :, 0], qkv[:, :, 1]
    expected = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(8), axis=-1)
    np.testing.assert_allclose(out["attention"][0], expected, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params_and_attention():
    model = ViT(num_classes=10, width=32, depth=2, num_heads=4, mlp_dim=64, dtype=jnp.bfloat16)
    images = jnp.ones((2, 32, 32, 3))
    params = jax.jit(model.init)(jax.random.key(0), images)["params"]
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    logits, out = jax.jit(partial(model.apply, return_attention=True))({"params": params}, images)
    assert logits.dtype == jnp.float32
    assert out["encoded"].dtype == jnp.bfloat16
    assert all(a.dtype == jnp.float32 for a in out["attention"])
