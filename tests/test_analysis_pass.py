"""The jitted locality pass against the model's full attention, across device counts, batch sizes,
pooling and image sizes; its memory against the attention of all layers; locality.json scalars."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vit_locality.analysis.attention_pass import (
    analyze_params,
    centre_attention,
    make_locality_pass,
)
from vit_locality.analysis.locality import DEFINITIONS, locality_metrics
from vit_locality.analysis.results import (
    format_table,
    locality_scalars,
    write_locality,
)
from vit_locality.models import ViT
from vit_locality.parallel import sharding
from vit_locality.predict import Predictor, normalize
from vit_locality.workdir import RunDir

from .conftest import LOCALITY_JSON_KEYS, cifar_locality_record

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
NAMES = sorted(DEFINITIONS)


def predictor(model):
    return Predictor(model, MEAN, STD)


def tiny_vit(pool="cls", depth=2):
    return ViT(num_classes=10, width=16, depth=depth, num_heads=2, mlp_dim=32, pool=pool)


def init(model, image_size):
    """Random parameters of the model's shapes, drawn by NumPy (no init to compile)."""
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), images)["params"]
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda s: rng.normal(0.0, 0.5, s.shape).astype(s.dtype), shapes)


def random_images(n, image_size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, image_size, image_size, 3), np.uint8)


def full_attention_metrics(model, params, images):
    """The reference: every layer's attention maps out of the model, then `locality_metrics`."""

    @jax.jit
    def reference(params, images):
        _, out = model.apply(
            {"params": params}, normalize(images, MEAN, STD), return_attention=True
        )
        return locality_metrics(
            jnp.stack(out["attention"]),
            grid=(images.shape[1] // model.patch_size, images.shape[2] // model.patch_size),
            num_prefix_tokens=model.num_prefix_tokens,
            patch_size=model.patch_size,
        )

    return {k: np.asarray(v) for k, v in reference(params, images).items()}


def assert_metrics_close(got, expected):
    assert sorted(got) == NAMES
    for name in NAMES:
        np.testing.assert_allclose(got[name], expected[name], rtol=2e-5, atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def cls_case():
    model = tiny_vit()
    params = init(model, 32)
    images = random_images(13, 32)
    return model, params, images, full_attention_metrics(model, params, images)


@pytest.mark.parametrize(
    ("devices", "batch_size"),
    [(8, 8), (1, 5), (8, 16)],  # 13 images: 2 batches, 3 batches, 1 batch; each ends padded
)
def test_pass_equals_metrics_of_the_full_attention(cls_case, devices, batch_size):
    model, params, images, expected = cls_case
    got = analyze_params(
        predictor(model), params, images, mesh=sharding.make_mesh(devices), batch_size=batch_size
    )
    for value in got.values():
        assert value.shape == (2, 2)
    assert_metrics_close(got, expected)


def test_gap_model_without_prefix_token():
    model = tiny_vit(pool="gap")
    params = init(model, 32)
    images = random_images(11, 32, seed=1)
    got = analyze_params(predictor(model), params, images, mesh=sharding.make_mesh(), batch_size=8)
    np.testing.assert_array_equal(got["prefix_mass"], 0.0)
    assert_metrics_close(got, full_attention_metrics(model, params, images))


def test_64px_with_patch_4_and_centre_attention():
    """257 tokens (16x16 patches + CLS)."""
    model = tiny_vit()
    params = init(model, 64)
    images = random_images(3, 64, seed=2)
    got = analyze_params(predictor(model), params, images, mesh=sharding.make_mesh(), batch_size=8)
    assert_metrics_close(got, full_attention_metrics(model, params, images))
    maps = centre_attention(predictor(model), params, images[:2])
    assert maps.shape == (2, 2, 16, 16)
    np.testing.assert_allclose(maps.sum(axis=(-2, -1)), 1.0, rtol=1e-5)


def test_pass_memory_is_about_one_layer_of_attention():
    """XLA's buffer assignment: the pass's temporaries do not grow with depth and stay far below
    the attention maps of all layers, which the unreduced forward keeps."""
    batch, heads, image_size = 16, 4, 64
    tokens = 1 + (image_size // 4) ** 2
    layer_bytes = batch * heads * tokens * tokens * 4
    images = jax.ShapeDtypeStruct((batch, image_size, image_size, 3), jnp.uint8)
    mask = jax.ShapeDtypeStruct((batch,), jnp.bool_)
    temp = {}
    for depth in (2, 8):
        model = ViT(num_classes=10, width=32, depth=depth, num_heads=heads, mlp_dim=64)
        params = jax.eval_shape(model.init, jax.random.key(0), images)["params"]
        compiled = make_locality_pass(predictor(model)).lower(params, images, mask).compile()
        temp[depth] = compiled.memory_analysis().temp_size_in_bytes
    assert temp[8] - temp[2] < 0.25 * layer_bytes, (temp, layer_bytes)
    assert temp[8] < 4 * layer_bytes < 8 * layer_bytes, (temp, layer_bytes)


def test_locality_json_schema_and_scalars(tmp_path):
    rng = np.random.default_rng(3)
    per_head = {name: rng.uniform(0.0, 1.0, (3, 2)) for name in NAMES}
    record = cifar_locality_record(per_head, step=7, num_images=13)
    write_locality(RunDir(tmp_path), record)
    on_disk = json.loads((tmp_path / "locality.json").read_text())
    assert on_disk == record
    assert list(on_disk) == LOCALITY_JSON_KEYS
    assert on_disk["grid"] == [8, 8] and on_disk["definitions"] == DEFINITIONS
    for name in NAMES:
        np.testing.assert_allclose(on_disk["per_head"][name], per_head[name], rtol=1e-15)
    scalars = locality_scalars(on_disk["summary"])
    assert scalars["locality/min_mad_first_layer"] == pytest.approx(per_head["mad"][0].min())
    assert scalars["locality/min_mad_early"] == pytest.approx(per_head["mad"][0].min())
    # layers numbered from 1, as in every table and figure
    assert scalars["locality/mad_mean/layer_03"] == pytest.approx(per_head["mad"][2].mean())
    assert scalars["locality/entropy_max/layer_01"] == pytest.approx(per_head["entropy"][0].max())
    assert len(scalars) == 2 + 6 * 3
    rows = format_table(record).splitlines()[3:6]  # one per layer, numbered from 1
    assert [row.split()[0] for row in rows] == ["1", "2", "3"]
    assert all(isinstance(v, float) for v in scalars.values())


def test_a_bfloat16_model_is_analysed_in_float32(cls_case):
    model, params, images, expected = cls_case
    bf16 = model.clone(dtype=jnp.bfloat16)
    mesh = sharding.make_mesh(1)
    got = analyze_params(predictor(bf16), params, images, mesh=mesh, batch_size=16)
    assert_metrics_close(got, expected)
    np.testing.assert_array_equal(
        centre_attention(predictor(bf16), params, images[:2]),
        centre_attention(predictor(model), params, images[:2]),
    )


def test_the_analysis_matmuls_run_at_full_float32_precision():
    """JAX's default matmul precision is TF32 on NVIDIA GPUs and one bfloat16 pass on TPUs; the
    CPU cannot show the difference, but the lowered pass (and the attention maps of the figures)
    must ask every dot product and convolution for HIGHEST."""
    model = tiny_vit().clone(dtype=jnp.bfloat16)
    params = init(model, 32)
    images, mask = random_images(2, 32), np.ones(2, bool)
    lowered = [
        make_locality_pass(predictor(model)).lower(params, images, mask).as_text(),
        jax.jit(
            lambda p, x: predictor(model).in_float32()(p, x)[0]  # logits through the same call
        )
        .lower(params, images)
        .as_text(),
    ]
    for text in lowered:
        products = [
            line for line in text.splitlines() if "dot_general" in line or "convolution" in line
        ]
        highest = (
            "precision = [HIGHEST, HIGHEST]",
            "precision HIGHEST>, #stablehlo<precision HIGHEST",
        )
        assert products and all(any(h in p for h in highest) for p in products), [
            p for p in products if "HIGHEST" not in p
        ][:3]
