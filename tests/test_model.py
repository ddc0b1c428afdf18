"""The ViT: parameter count against a hand count, shapes, attention outputs, dtypes."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from vit_locality.models import ViT
from vit_locality.models.vit import EncoderBlock, MlpBlock


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


# The fields for other people's ViTs (vit_locality/external/); the defaults above are unchanged.


def random_params(model, image_size, seed=0):
    """Parameters of the model's shapes drawn from N(0, 0.5) (non-zero heads, scales, tokens)."""
    shapes = jax.eval_shape(
        model.init, jax.random.key(0), jnp.zeros((1, image_size, image_size, 3))
    )
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(0.0, 0.5, s.shape).astype(s.dtype), shapes["params"])


def layer_norm(x, scale, bias, eps):
    x = np.asarray(x, np.float64)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def embedded_tokens(params, images, patch):
    """[B, N, D] patch embeddings by hand (the row-major patches times the conv kernel)."""
    b, h, w, c = images.shape
    gh, gw = h // patch, w // patch
    patches = images.reshape(b, gh, patch, gw, patch, c).transpose(0, 1, 3, 2, 4, 5)
    kernel = np.asarray(params["embedding"]["kernel"], np.float64)
    kernel = kernel.reshape(-1, kernel.shape[-1])
    return patches.reshape(b, gh * gw, -1) @ kernel + params["embedding"]["bias"]


@pytest.mark.parametrize("pos_embed_prefix", [False, True])
def test_prefix_tokens_order_and_position_embedding(pos_embed_prefix):
    """Depth 0: the encoded tokens are LayerNorm([CLS, dist, registers, patches] + positions),
    the position embedding covering the prefix tokens only with pos_embed_prefix."""
    model = ViT(
        num_classes=0, patch_size=4, width=8, depth=0, num_heads=2, mlp_dim=8,
        distill_token=True, num_registers=3, pos_embed_prefix=pos_embed_prefix,
    )  # fmt: skip
    assert model.num_prefix_tokens == 5
    images = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype(np.float32)
    params = random_params(model, 8)
    assert params["pos_embedding"].shape == (1, (5 if pos_embed_prefix else 0) + 4, 8)
    assert params["reg"].shape == (1, 3, 8) and params["dist"].shape == (1, 1, 8)
    _, out = jax.jit(model.apply)({"params": params}, images)
    patches = embedded_tokens(params, images, 4)
    prefix = np.concatenate([params["cls"], params["dist"], params["reg"]], axis=1)
    prefix = np.broadcast_to(prefix, (2, 5, 8))
    pos = np.asarray(params["pos_embedding"], np.float64)
    if pos_embed_prefix:
        tokens = np.concatenate([prefix, patches], axis=1) + pos
    else:
        tokens = np.concatenate([prefix, patches + pos], axis=1)
    norm = params["encoder_norm"]
    expected = layer_norm(tokens, norm["scale"], norm["bias"], 1e-6)
    np.testing.assert_allclose(out["encoded"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["logits"], expected[:, 0], rtol=1e-5, atol=1e-5)  # no head
    assert "head" not in params


def test_gap_with_registers_and_norm_after_pool():
    """timm's GAP: the mean of the patch tokens only (registers left out), then fc_norm; with
    eps 0.5 the LayerNorm epsilon is visible."""
    model = ViT(
        num_classes=3, patch_size=4, width=8, depth=0, num_heads=2, mlp_dim=8, pool="gap",
        num_registers=2, norm_after_pool=True, layer_norm_eps=0.5,
    )  # fmt: skip
    assert model.num_prefix_tokens == 2
    images = np.random.default_rng(2).normal(size=(2, 8, 8, 3)).astype(np.float32)
    params = random_params(model, 8)
    assert "cls" not in params
    logits, out = jax.jit(model.apply)({"params": params}, images)
    patches = embedded_tokens(params, images, 4) + params["pos_embedding"]
    norm = params["encoder_norm"]
    pooled = layer_norm(patches.mean(1), norm["scale"], norm["bias"], 0.5)
    np.testing.assert_allclose(out["pre_logits"], pooled, rtol=1e-5, atol=1e-5)
    head = params["head"]
    np.testing.assert_allclose(logits, pooled @ head["kernel"] + head["bias"], rtol=1e-5, atol=1e-5)


def test_distillation_head_is_the_mean_of_both_heads():
    model = ViT(num_classes=5, width=8, depth=1, num_heads=2, mlp_dim=8, distill_token=True)
    images = np.random.default_rng(3).normal(size=(2, 8, 8, 3)).astype(np.float32)
    params = random_params(model, 8)
    logits, out = jax.jit(model.apply)({"params": params}, images)
    enc = np.asarray(out["encoded"], np.float64)
    head, dist = params["head"], params["head_dist"]
    expected = (enc[:, 0] @ head["kernel"] + head["bias"] + enc[:, 1] @ dist["kernel"]) / 2
    np.testing.assert_allclose(
        logits, expected + np.asarray(dist["bias"]) / 2, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("approximate", [True, False])
def test_gelu_exact_or_tanh(approximate):
    block = MlpBlock(mlp_dim=6, gelu_approximate=approximate)
    x = np.linspace(-4, 4, 2 * 5 * 4, dtype=np.float32).reshape(2, 5, 4)
    params = jax.jit(block.init)(jax.random.key(0), x)["params"]
    h = np.asarray(x, np.float64) @ params["fc1"]["kernel"] + params["fc1"]["bias"]
    if approximate:
        act = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))
    else:
        act = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    expected = act @ params["fc2"]["kernel"] + params["fc2"]["bias"]
    np.testing.assert_allclose(block.apply({"params": params}, x), expected, rtol=1e-5, atol=1e-6)


def test_layer_scale_scales_each_residual_branch():
    """Scales of 0 make the block the identity; the initial value is the field's."""
    block = EncoderBlock(num_heads=2, mlp_dim=8, layer_scale_init=1e-5)
    x = np.random.default_rng(4).normal(size=(2, 5, 8)).astype(np.float32)
    params = jax.jit(block.init)(jax.random.key(0), x)["params"]
    for name in ("ls1", "ls2"):
        np.testing.assert_array_equal(params[name]["scale"], np.full(8, 1e-5, np.float32))
    zero = {**params, "ls1": {"scale": np.zeros(8)}, "ls2": {"scale": np.zeros(8)}}
    np.testing.assert_array_equal(block.apply({"params": zero}, x)[0], x)
    plain = EncoderBlock(num_heads=2, mlp_dim=8)
    unscaled = {k: v for k, v in params.items() if k not in ("ls1", "ls2")}
    ones = {**params, "ls1": {"scale": np.ones(8)}, "ls2": {"scale": np.ones(8)}}
    np.testing.assert_allclose(
        block.apply({"params": ones}, x)[0], plain.apply({"params": unscaled}, x)[0], atol=1e-6
    )


def test_inconsistent_token_fields_are_refused():
    images = jnp.zeros((1, 8, 8, 3))
    with pytest.raises(ValueError, match="pool='cls' needs class_token"):
        ViT(num_classes=2, width=8, depth=1, num_heads=2, mlp_dim=8, class_token=False).init(
            jax.random.key(0), images
        )
    with pytest.raises(ValueError, match="distill_token=True needs norm_after_pool=False"):
        ViT(
            num_classes=2, width=8, depth=1, num_heads=2, mlp_dim=8, distill_token=True,
            norm_after_pool=True,
        ).init(jax.random.key(0), images)  # fmt: skip


def test_attention_carry_goes_from_layer_to_layer():
    """With an initial carry, reduce_attention(probs, carry) -> (reduced, carry) is called in
    layer order and the last carry comes back."""
    model = ViT(num_classes=2, width=8, depth=3, num_heads=2, mlp_dim=8)
    images = jnp.ones((2, 8, 8, 3))
    params = jax.jit(model.init)(jax.random.key(0), images)["params"]

    def reduce(probs, carry):
        return probs.sum(-1).mean(), carry * 10 + probs.shape[1]

    _, out = model.apply(
        {"params": params}, images, reduce_attention=reduce, attention_carry=jnp.int32(1)
    )
    assert int(out["attention_carry"]) == 1222  # ((1 * 10 + 2) * 10 + 2) * 10 + 2
    np.testing.assert_allclose(out["attention_reduced"], 1.0, rtol=1e-6)
