"""`python -m vit_locality.analyze --checkpoint=... --images=DIR --out=DIR` on the fixtures of
tests/fixtures/checkpoints/: locality.json equals the locality metrics of the original library's
own attention maps on the same pixels; the command line writes the same schema as a run's
analysis; bad input is one line; and the analytic anchors of the ViT paper's figure."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from vit_locality.analysis.attention_pass import (
    analyze_params,
    centre_attention_layers,
    make_locality_pass,
)
from vit_locality.analysis.locality import DEFINITIONS, locality_metrics, locality_sums
from vit_locality.external import load_checkpoint
from vit_locality.external.analyze import analyze_checkpoint
from vit_locality.models import ViT
from vit_locality.parallel import sharding
from vit_locality.predict import Predictor

from .conftest import LOCALITY_JSON_KEYS, REPO_ROOT, analyze_main

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "checkpoints"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_images(folder, images, suffix=".png"):
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}{suffix}")
    return folder


# (checkpoint, expected.npz folder, --resize that leaves an image of the model's size as it is)
CASES = [
    ("timm_vit", "timm_vit", 32),
    ("timm_reg_gap_ls", "timm_reg_gap_ls", 56),
    ("hf_deit_distilled", "hf_deit_distilled", 64),
    ("hf_vit_model", "hf_vit_model", None),
    ("npz_big_vision_scanned/ckpt.npz", "npz_big_vision_scanned", None),
]


@pytest.mark.parametrize("checkpoint,fixture,resize", CASES)
def test_locality_json_is_that_of_the_original_attention(tmp_path, checkpoint, fixture, resize):
    """The fixture's images, saved losslessly at the model's size, go through the preprocessing
    untouched; the per-head metrics must then be `locality_metrics` of the attention maps timm or
    transformers computed (tolerance: the maps agree to ~1e-6, see test_external_checkpoints)."""
    want = dict(np.load(FIXTURES / fixture / "expected.npz"))
    images = write_images(tmp_path / "images", want["images"])
    gelu = "exact" if checkpoint.endswith(".npz") else None
    record = analyze_checkpoint(
        FIXTURES / checkpoint, images, tmp_path / "out", resize=resize, gelu=gelu, batch_size=8
    )
    grid, prefix, patch = record["grid"], record["num_prefix_tokens"], record["patch_size"]
    reference = locality_metrics(
        jnp.asarray(want["attention"]), grid=tuple(grid), num_prefix_tokens=prefix,
        patch_size=patch,
    )  # fmt: skip
    for name in DEFINITIONS:
        np.testing.assert_allclose(
            record["per_head"][name], reference[name], rtol=2e-5, atol=2e-6, err_msg=name
        )
    assert json.loads((tmp_path / "out" / "locality.json").read_text()) == record
    assert record["num_images"] == len(want["images"])


def reference_rollout(attention, fusion, prefix, class_token):
    """Abnar & Zuidema's rollout of [L, B, H, T, T] maps in float64: per layer the heads fused,
    plus the identity, rows renormalised, multiplied through the layers; the CLS row over the
    patches (the mean of the patch rows without a class token)."""
    attention = np.asarray(attention, np.float64)
    eye = np.eye(attention.shape[-1])
    rollout = eye
    for layer in attention:
        fused = getattr(np, fusion)(layer, axis=1) + eye
        rollout = fused / fused.sum(-1, keepdims=True) @ rollout
    if class_token:
        return rollout[:, 0, prefix:]
    return rollout[:, prefix:, prefix:].mean(1)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("fixture", ["timm_vit", "timm_reg_gap_ls"])
def test_rollout_in_the_pass_is_that_of_the_original_attention(fixture, fusion):
    """Rollout computed inside the jitted pass equals the rollout of timm's own attention maps
    (float32 products of 2 layers against float64: 1e-5 of the values, which are at most 1)."""
    want = dict(np.load(FIXTURES / fixture / "expected.npz"))
    loaded = load_checkpoint(FIXTURES / fixture)
    model = loaded.model
    result = analyze_params(
        Predictor(model, loaded.preprocessing.mean, loaded.preprocessing.std), loaded.params,
        want["images"], mesh=sharding.make_mesh(), batch_size=8, rollout=fusion,
    )  # fmt: skip
    reference = reference_rollout(
        want["attention"], fusion, model.num_prefix_tokens, model.has_class_token
    )
    maps = result["rollout"]
    assert maps.shape == (len(want["images"]), 4, 4)
    np.testing.assert_allclose(maps.reshape(len(maps), -1), reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fixture", ["timm_deit_distilled", "hf_vit_classifier"])
def test_every_layers_centre_patch_maps_are_the_original_attention(fixture):
    """The per-layer attention maps figure shows the original maps: every layer's row of the
    centre patch over the patch keys, renormalised (float32 on both sides: 2e-6)."""
    want = dict(np.load(FIXTURES / fixture / "expected.npz"))
    loaded = load_checkpoint(FIXTURES / fixture)
    model = loaded.model
    prep = loaded.preprocessing
    maps = centre_attention_layers(
        Predictor(model, prep.mean, prep.std), loaded.params, want["images"]
    )
    side = loaded.image_size[0] // model.patch_size
    p = model.num_prefix_tokens
    rows = want["attention"][..., p + (side // 2) * side + side // 2, p:]  # [L, B, H, N]
    rows = rows / rows.sum(-1, keepdims=True)
    assert maps.shape == (*rows.shape[:3], side, side)
    np.testing.assert_allclose(maps.reshape(rows.shape), rows, rtol=1e-5, atol=2e-6)


def python(*args, timeout=300):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    return subprocess.run(
        [sys.executable, "-m", "vit_locality.analyze", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_command_line_on_jpegs_of_any_size(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [(40, 71), (90, 60), (56, 56)]
    images = [rng.integers(0, 256, (h, w, 3), np.uint8) for h, w in sizes]
    folder = write_images(tmp_path / "images", images, suffix=".jpg")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    result = python(f"--checkpoint={FIXTURES / 'timm_reg_gap_ls'}", f"--images={folder}",
                    f"--out={out}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "locality.json").read_text())
    assert list(record) == LOCALITY_JSON_KEYS
    assert (record["num_images"], record["image_size"], record["patch_size"]) == (3, 56, 14)
    assert (record["grid"], record["num_prefix_tokens"]) == ([4, 4], 2)
    plots = ("mad_per_head", "entropy_per_head", "attention_maps", "mad_px_vit_paper", "rollout",
             "attention_maps_layers")  # fmt: skip
    for plot in plots:
        assert (out / "plots" / f"{plot}.png").read_bytes()[:8] == PNG_SIGNATURE, plot
    assert result.stdout.splitlines()[0].startswith("locality at step 0: ")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--workdir=W", "--checkpoint=C"],
         "--workdir and --checkpoint are not allowed together: one of them"),
        (["--checkpoint=C", "--images=I"],
         "--checkpoint needs --out=DIR and one of --images=DIR, --dataset=NAME"),
        (["--checkpoint=C", "--out=O", "--dataset=imagenet"],
         "--dataset='imagenet' is not allowed: one of cifar10, cifar100, fashion_mnist, "
         "tiny_imagenet"),
        (["--checkpoint=C", "--images=I", "--out=O", "--format=keras"],
         "--format='keras' is not allowed: one of timm, big_vision, hf, clip, torchvision, "
         "project"),
        (["--checkpoint=C", "--images=I", "--out=O", "--std=0.5,0,0.5"],
         "--std=0.5,0.0,0.5 is not allowed: positive numbers"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    folder = write_images(tmp_path / "I", [np.zeros((32, 32, 3), np.uint8)])
    paths = {"W": tmp_path / "W", "C": FIXTURES / "timm_vit", "I": folder, "O": tmp_path / "O"}
    args = [a[: a.index("=") + 1] + str(paths.get(a[a.index("=") + 1 :], a[a.index("=") + 1 :]))
            for a in args]  # fmt: skip
    result = python(*args)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {message}"]
    assert not (tmp_path / "O").exists() and not (tmp_path / "W").exists()


def cut_in_half(path):
    """A download that stopped half-way."""
    os.truncate(path, path.stat().st_size // 2)


def damage_the_header(path):
    """Bytes of a safetensors header (its JSON, after the 8-byte length) overwritten."""
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(b"\xff" * 32)


def damage_the_data(path):
    """1000 bytes of a file's second half overwritten (0xFF: NaN in float32)."""
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 1000] = b"\xff" * 1000
    path.write_bytes(bytes(raw))


def as_pth(path):
    """A zip archive like PyTorch's .pth (torch is not needed to see it cut short)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", bytes(range(256)) * 64)
        archive.writestr("archive/data/0", bytes(4096))


CUT_SHORT = r" is cut short \(a download or copy that stopped\?\): "
# (checkpoint copied from the fixtures or made, the file damaged in it, the damage, --arch,
# what the line says after the file's path)
DAMAGED = [
    pytest.param("timm_vit", "model.safetensors", cut_in_half, None,
                 CUT_SHORT + r"21410 bytes of the 42820 its header describes", id="timm-cut"),
    pytest.param("hf_vit_model", "model.safetensors", cut_in_half, None,
                 CUT_SHORT + r"22508 bytes of the 45016 its header describes", id="hf-cut"),
    pytest.param("timm_vit/model.safetensors", "", cut_in_half, "vit_tiny_patch16_224",
                 CUT_SHORT + r"21410 bytes of the 42820 its header describes",
                 id="bare-safetensors-cut"),
    pytest.param("timm_vit", "model.safetensors", damage_the_header, None,
                 r": its safetensors header is damaged \('utf-8' codec can't decode byte 0xff "
                 r"in position 0: invalid start byte\)", id="safetensors-header"),
    pytest.param("timm_vit", "model.safetensors", damage_the_data, None,
                 r": tensor [\w.]+ holds NaN or infinite numbers: its data is damaged \(a "
                 r"trained ViT holds neither\)", id="safetensors-data"),
    pytest.param("npz_vision_transformer/ckpt.npz", "", cut_in_half, None,
                 CUT_SHORT + "the end of its zip archive is missing", id="npz-cut"),
    pytest.param("npz_vision_transformer/ckpt.npz", "", damage_the_data, None,
                 r" is damaged \(Bad CRC-32 for file '[\w/]+\.npy'\)", id="npz-data"),
    pytest.param("model.pth", "", cut_in_half, "vit_tiny_patch16_224",
                 CUT_SHORT + "the end of its zip archive is missing", id="pth-cut"),
]  # fmt: skip


@pytest.mark.parametrize("source,damaged,damage,arch,message", DAMAGED)
def test_a_damaged_checkpoint_is_one_line_naming_the_file(
    tmp_path, capfd, source, damaged, damage, arch, message
):
    """A copy of a fixture (or a .pth-like zip) damaged one way: `analyze --checkpoint` prints
    one line naming the file and what is wrong, and nothing else; exit 2; nothing written."""
    checkpoint = tmp_path / pathlib.Path(source).name
    if source.endswith(".pth"):
        as_pth(checkpoint)
    elif (FIXTURES / source).is_dir():
        shutil.copytree(FIXTURES / source, checkpoint)
    else:
        shutil.copy(FIXTURES / source, checkpoint)
    path = checkpoint / damaged if damaged else checkpoint
    damage(path)
    images = write_images(tmp_path / "images", [np.zeros((32, 32, 3), np.uint8)])
    args = [f"--checkpoint={checkpoint}", f"--images={images}", f"--out={tmp_path / 'out'}"]
    capfd.readouterr()
    assert analyze_main(*args, *([f"--arch={arch}", "--num_heads=2"] if arch else [])) == 2
    out, err = capfd.readouterr()
    assert re.fullmatch(f"error: {re.escape(str(path))}{message}\n", err), err
    assert out == "" and not (tmp_path / "out").exists()


def test_a_dataset_tfds_cannot_download_is_one_line_and_nothing_else(
    tmp_path, capfd, unreachable_downloads
):
    """`--dataset=cifar10` with cifar10 not prepared and its download host unreachable: the whole
    stderr is the one line naming the host and the `files` source (it came after 19 lines of
    tfds' download progress), exit 2, without tfds being asked to download."""
    port, prepared = unreachable_downloads
    out = tmp_path / "out"
    capfd.readouterr()
    assert (
        analyze_main(f"--checkpoint={FIXTURES / 'timm_vit'}", "--dataset=cifar10", f"--out={out}")
        == 2
    )
    assert capfd.readouterr() == (
        "",
        f"error: dataset cifar10: tfds would download it from 127.0.0.1:{port}, which cannot be "
        "reached (Connection refused). Offline, use the local files: --config.data.source=files "
        "--config.data.dir=PATH where PATH holds the official cifar-10-batches-bin files "
        "(data_batch_1.bin .. data_batch_5.bin, test_batch.bin)\n",
    )
    assert prepared == [] and not out.exists()


def test_analytic_anchors_uniform_is_116_5_px_and_self_is_0():
    """The ViT paper's figure at 224 px, patches of 16: uniform attention over the 14 x 14
    patches is 116.5 px away on average (its "global" ceiling); attention on itself is 0 px;
    rollout of uniform attention is uniform over the patches.
    Uniform attention comes from a ViT whose queries and keys are 0: every token attends to all
    197 equally, so the renormalised MAD is the uniform 116.5 px and the ViT paper's own
    convention (the CLS column dropped, not renormalised) gives 116.5 * 196 / 197."""
    model = ViT(num_classes=0, patch_size=16, width=8, depth=2, num_heads=2, mlp_dim=8)
    images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), images)["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(0, 0.5, s.shape).astype(np.float32), shapes)
    for block in ("block00", "block01"):  # q = k = 0; values keep their random weights
        params[block]["attn"]["qkv"]["kernel"][:, :2] = 0.0
        params[block]["attn"]["qkv"]["bias"][:2] = 0.0
    pixels = rng.integers(0, 256, (2, 224, 224, 3), np.uint8)
    per_head = analyze_params(
        Predictor(model, (0.5,) * 3, (0.5,) * 3), params, pixels,
        mesh=sharding.make_mesh(), batch_size=8, rollout="mean",
    )  # fmt: skip
    np.testing.assert_allclose(per_head["mad_px"], 116.5, atol=0.05)
    # Rollout of uniform U over L = 2 layers: ((U + I) / 2)^2 = (I + 3 U) / 4, so the CLS row
    # puts 3 / (4 * 197) on every patch.
    np.testing.assert_allclose(per_head["rollout"], 3 / (4 * 197), rtol=1e-5)
    np.testing.assert_allclose(per_head["mad_unnorm_px"], 116.5 * 196 / 197, atol=0.05)
    np.testing.assert_allclose(per_head["mad"], 116.5 / 224, atol=0.05 / 224)

    itself = jnp.eye(197)[None, None].at[..., 0, :].set(1 / 197)  # [B=1, H=1, T, T]
    sums, count = locality_sums(itself, grid=(14, 14), num_prefix_tokens=1, patch_size=16)
    assert float(sums["mad_px"][0] / count) == 0.0
    assert float(sums["mad_unnorm_px"][0] / count) == 0.0


def test_rollout_adds_about_one_product_per_layer_to_the_pass_memory():
    """XLA's buffer assignment with rollout on: the heads are fused inside the pass's scan over
    heads, so no layer's maps outlive it; what grows with depth is about one carried [B, T, T]
    float32 product per layer (on XLA:CPU, measured 1.0-1.2 of it), depth / heads of one layer's
    maps (one layer's maps for ViT-B/16), against the depth x heads x [B, T, T] of all maps."""
    batch, heads, image_size = 16, 4, 64
    tokens = 1 + (image_size // 4) ** 2
    product_bytes = batch * tokens * tokens * 4
    images = jax.ShapeDtypeStruct((batch, image_size, image_size, 3), jnp.uint8)
    mask = jax.ShapeDtypeStruct((batch,), jnp.bool_)
    for fusion in ("mean", "max"):
        temp = {}
        for depth in (2, 8):
            model = ViT(num_classes=10, width=32, depth=depth, num_heads=heads, mlp_dim=64)
            params = jax.eval_shape(model.init, jax.random.key(0), images)["params"]
            predictor = Predictor(model, (0.5,) * 3, (0.5,) * 3)
            lowered = make_locality_pass(predictor, fusion).lower(params, images, mask)
            temp[depth] = lowered.compile().memory_analysis().temp_size_in_bytes
        assert temp[8] - temp[2] < 6 * 1.25 * product_bytes, (fusion, temp, product_bytes)
