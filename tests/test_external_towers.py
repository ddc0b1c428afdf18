"""CLIP, SigLIP, DINOv2 and torchvision ViTs in their libraries' own formats against those
libraries' outputs (issue 31), and the one-line refusals of ViTs with rotary position embedding.

tests/fixtures/checkpoints/ holds them as timm, open_clip, torchvision and transformers saved
them (`scripts/make_checkpoint_fixtures.py --towers`; these tests need none of those libraries).
Tolerances are test_external_checkpoints' (`helpers.assert_close`: rtol 1e-5, atol 1e-5 of the
largest value; preprocessing 2e-6) and test_analyze_checkpoint's (locality.json: rtol 2e-5, atol
2e-6).
"""

import importlib.util
import json
import re
import shutil
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from vit_locality.analysis.locality import DEFINITIONS, locality_metrics
from vit_locality.errors import UserError
from vit_locality.external import detect_format, load_checkpoint
from vit_locality.external.analyze import analyze_checkpoint

from .helpers import CHECKPOINT_FIXTURES as FIXTURES
from .helpers import assert_close
from .helpers import checkpoint_outputs as run
from .helpers import expected_outputs as expected

# (fixture, format, load_checkpoint's arguments, prefix tokens, what the model must have)
CASES = [
    ("timm_clip", "timm", {}, 1, dict(norm_pre=True, patch_bias=False, activation="gelu")),
    ("timm_clip_quickgelu", "timm", {}, 1, dict(norm_pre=True, activation="quick_gelu")),
    ("timm_siglip", "timm", {}, 0, dict(pool="gap", num_classes=0, gelu_approximate=False)),
    ("openclip_hub", "clip", {}, 1, dict(activation="gelu", layer_scale_init=1.0)),
    ("openclip_timm_siglip", "clip", {}, 0, dict(pool="gap", num_heads=3, num_classes=0)),
    ("openai_clip/model.safetensors", "clip", {"num_heads": 2}, 1,
     dict(activation="quick_gelu", norm_pre=True, patch_bias=False)),
    ("torchvision_vit/model.safetensors", "torchvision", {"num_heads": 2}, 1,
     dict(gelu_approximate=False, layer_norm_eps=1e-6)),
    ("hf_clip", "hf", {}, 1, dict(activation="quick_gelu", norm_after_pool=True, num_classes=5)),
    ("hf_clip_vision", "hf", {}, 1, dict(activation="quick_gelu", num_classes=0)),
    ("hf_siglip_vision", "hf", {}, 0, dict(pool="gap", gelu_approximate=True)),
    ("hf_dinov2", "hf", {}, 1, dict(layer_scale_init=1.0, pos_embed_prefix=True)),
    ("hf_dinov2_registers", "hf", {}, 3, dict(num_registers=2, pos_embed_prefix=False)),
]  # fmt: skip
# Pooled outputs that are not the model's: timm SigLIP's attention-pooling (MAP) head (also in
# OpenCLIP's timm trunk) is read and not used (its blocks are analysed), so the logits differ.
NOT_COMPARED = {"timm_siglip": "logits", "openclip_timm_siglip": "logits"}


def load(name, kwargs):
    return load_checkpoint(FIXTURES / name, **kwargs)


@pytest.mark.parametrize("name,format,kwargs,prefix,fields", CASES)
def test_outputs_and_attention_match_the_original(name, format, kwargs, prefix, fields):
    assert detect_format(FIXTURES / name) == format
    loaded = load(name, kwargs)
    assert loaded.format == format and loaded.model.num_prefix_tokens == prefix
    for field, value in fields.items():
        assert getattr(loaded.model, field) == value, field
    want = expected(name)
    np.testing.assert_allclose(loaded.preprocessing.mean, want["mean"], rtol=1e-7)
    np.testing.assert_allclose(loaded.preprocessing.std, want["std"], rtol=1e-7)
    logits, out = run(loaded, want["images"])
    attention = np.stack(out["attention"])
    assert attention.shape == want["attention"].shape
    assert_close(attention, want["attention"], "attention")
    assert_close(out["encoded"], want["encoded"], "encoded")
    if "logits" in want and NOT_COMPARED.get(name) != "logits":
        assert_close(logits, want["logits"], "logits")


@pytest.mark.parametrize("name,kwargs", [(c[0], c[2]) for c in CASES])
def test_preprocessing_matches_the_original(name, kwargs):
    """The library's eval transform of an odd-sized image (timm's from pretrained_cfg,
    open_clip's image_transform, torchvision's ImageClassification as its SWAG weights set it,
    the Hugging Face image processors' PIL backend): the same pixels."""
    loaded = load(name, kwargs)
    want = expected(name)
    pixels = loaded.preprocessing.prepare([Image.fromarray(want["raw_image"])])
    assert pixels.shape == want["preprocessed"].shape
    mean, std = (np.asarray(v, np.float32) for v in (want["mean"], want["std"]))
    normalized = (pixels.astype(np.float32) / 255.0 - mean) / std
    np.testing.assert_allclose(normalized, want["preprocessed"], rtol=0, atol=2e-6)


def write_images(folder, images):
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return folder


@pytest.mark.parametrize(
    "name,kwargs,resize",
    [
        ("timm_clip", {}, 32),  # timm's crop_pct 0.9 would resize to 35
        ("timm_siglip", {}, 32),
        ("openai_clip/model.safetensors", {"num_heads": 2}, None),
        ("torchvision_vit/model.safetensors", {"num_heads": 2}, None),
        ("hf_clip", {}, None),
        ("hf_siglip_vision", {}, None),
        ("hf_dinov2_registers", {}, 32),
        ("openclip_timm_siglip", {}, None),
    ],
)
def test_locality_json_is_that_of_the_original_attention(tmp_path, name, kwargs, resize):
    """As test_analyze_checkpoint's: the images at the model's size go through untouched; the
    per-head metrics are `locality_metrics` of the library's own maps."""
    want = expected(name)
    images = write_images(tmp_path / "images", want["images"])
    record = analyze_checkpoint(
        FIXTURES / name, images, tmp_path / "out", resize=resize, batch_size=8, **kwargs
    )
    reference = locality_metrics(
        jnp.asarray(want["attention"]),
        grid=tuple(record["grid"]),
        num_prefix_tokens=record["num_prefix_tokens"],
        patch_size=record["patch_size"],
    )
    for metric in DEFINITIONS:
        np.testing.assert_allclose(
            record["per_head"][metric], reference[metric], rtol=2e-5, atol=2e-6, err_msg=metric
        )
    assert json.loads((tmp_path / "out" / "locality.json").read_text()) == record


@pytest.mark.parametrize(
    "name,family",
    [("timm_eva02", "EVA-02"), ("timm_dinov3", "DINOv3")],
)
def test_a_rope_vit_is_one_line_naming_its_family(tmp_path, name, family):
    """timm's eva.py models (saved by timm): one line, in the folder and as a bare state dict."""
    pattern = rf"timm \w+ \({family}, timm's eva\.py\) uses rotary position embedding \(RoPE\)"
    with pytest.raises(UserError, match=pattern) as error:
        load_checkpoint(FIXTURES / name)
    assert "\n" not in str(error.value)
    arch = json.loads((FIXTURES / name / "config.json").read_text())["architecture"]
    weights = tmp_path / "model.safetensors"
    shutil.copy(FIXTURES / name / "model.safetensors", weights)
    with pytest.raises(UserError, match=pattern):
        load_checkpoint(weights, arch=arch)


def test_a_hugging_face_dinov3_is_one_line(tmp_path):
    folder = tmp_path / "dinov3"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "dinov3_vit"}))
    with pytest.raises(UserError, match=r"Hugging Face DINOv3 image model uses rotary position "):
        load_checkpoint(folder)


def write_safetensors(path, arrays):
    """float32 arrays as a .safetensors file (no safetensors package here)."""
    header, offset, blobs = {}, 0, []
    for name, array in arrays.items():
        blob = np.ascontiguousarray(array, "<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}  # fmt: skip
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def test_a_clip_tower_without_ln_pre_names_what_it_needs(tmp_path):
    """A CLIP state dict lacking a part is refused in the family's words, not by a bare name."""
    from vit_locality.external.arrays import read_safetensors

    state = read_safetensors(FIXTURES / "openai_clip" / "model.safetensors")
    del state["visual.ln_pre.weight"], state["visual.ln_pre.bias"]
    write_safetensors(tmp_path / "clip.safetensors", state)
    with pytest.raises(UserError, match=re.escape("CLIP image tower (OpenAI / OpenCLIP layout): "
                                                  "needs ln_pre")):  # fmt: skip
        load_checkpoint(tmp_path / "clip.safetensors")


def test_gelu_override_reaches_quick_gelu():
    loaded = load_checkpoint(FIXTURES / "openclip_hub", gelu="quick")
    assert loaded.model.activation == "quick_gelu"
    loaded = load_checkpoint(FIXTURES / "openai_clip/model.safetensors", gelu="exact", num_heads=2)
    assert (loaded.model.activation, loaded.model.gelu_approximate) == ("gelu", False)


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch installed")
@pytest.mark.parametrize(
    "file,marker,format",
    [("ViT-B-32.pt", b"class_embedding", "clip"), ("vit_b_16.pth", b"conv_proj", "torchvision")],
)
def test_a_torch_file_without_torch_is_told_apart_and_one_line(tmp_path, file, marker, format):
    """OpenAI's .pt (a TorchScript archive) and torchvision's .pth are zip archives whose
    pickles name their parts: the format is found without torch, then reading it needs torch."""
    path = tmp_path / file
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00X\x0f\x00\x00\x00" + marker)
    assert detect_format(path) == format
    with pytest.raises(UserError, match=rf"reading a \{path.suffix} needs PyTorch \(pip install"):
        load_checkpoint(path)


def smooth_image(height, width):
    """The fixture script's smooth test image (uint8 [height, width, 3] of slow waves)."""
    i, j = np.mgrid[:height, :width].astype(np.float64)
    waves = [np.sin(i / 7) * np.cos(j / 11), np.sin((i + j) / 13), np.cos(i / 5 - j / 9)]
    return np.round(127.5 + 127 * np.stack(waves, -1)).astype(np.uint8)


def test_a_224_px_torchvision_vit_gets_the_imagenet1k_v1_transform(tmp_path):
    """The fixture's weights with a position embedding for 224 px (28 x 28 patches of 8): the
    transform of vit_b_16's IMAGENET1K_V1 weights (resize 256, bilinear, crop 224), the pixels
    torchvision's ImageClassification gives (every 4th row and column stored)."""
    from vit_locality.external.arrays import read_safetensors

    state = read_safetensors(FIXTURES / "torchvision_vit" / "model.safetensors")
    state["encoder.pos_embedding"] = np.zeros((1, 1 + 28 * 28, 16), np.float32)
    write_safetensors(tmp_path / "vit_224.safetensors", state)
    loaded = load_checkpoint(tmp_path / "vit_224.safetensors", num_heads=2)
    prep = loaded.preprocessing
    assert (prep.image_size, prep.resize, prep.interpolation) == ((224, 224), 256, "bilinear")
    pixels = prep.prepare([Image.fromarray(smooth_image(240, 300))])[0]
    np.testing.assert_array_equal(pixels[::4, ::4], expected("torchvision_vit")["pixels_224"])


HF_TOWERS = [c[0] for c in CASES if c[0].startswith("hf_")]


@pytest.mark.parametrize("name", HF_TOWERS)
def test_preprocessing_against_the_torchvision_image_processor(name):
    """As test_external_checkpoints' for ViT / DeiT: transformers' default (torchvision)
    processors differ from the PIL ones by at most one uint8 level, in at most 1% of values."""
    loaded = load_checkpoint(FIXTURES / name)
    want = expected(name)
    pixels = loaded.preprocessing.prepare([Image.fromarray(want["raw_image"])])
    mean, std = (np.asarray(v, np.float32) for v in (want["mean"], want["std"]))
    levels = np.abs((pixels / 255.0 - mean) / std - want["preprocessed_torchvision"]) * std * 255
    assert levels.max() < 1.0 + 1e-4
    assert (levels > 1e-3).mean() <= 0.01


@pytest.mark.parametrize("name", ["timm_clip", "timm_clip_quickgelu", "timm_siglip"])
def test_a_bare_timm_state_dict_of_clip_or_siglip_matches_the_original(tmp_path, name):
    """model.safetensors alone with timm's name: the same model (norm_pre, QuickGELU from the
    name, SigLIP's map pooling from attn_pool), OpenAI's or 0.5 mean / std, timm's outputs."""
    weights = tmp_path / f"{name}.safetensors"
    shutil.copy(FIXTURES / name / "model.safetensors", weights)
    arch = json.loads((FIXTURES / name / "config.json").read_text())["architecture"]
    loaded = load_checkpoint(weights, arch=arch, num_heads=2)
    folder = load_checkpoint(FIXTURES / name)
    assert loaded.model == folder.model
    assert (loaded.preprocessing.mean, loaded.preprocessing.std) == (
        folder.preprocessing.mean,
        folder.preprocessing.std,
    )
    want = expected(name)
    _, out = run(loaded, want["images"])
    assert_close(np.stack(out["attention"]), want["attention"], "attention")
    assert_close(out["encoded"], want["encoded"], "encoded")


def test_the_command_line_on_an_openai_clip_state_dict(tmp_path, capfd):
    """`python -m vit_locality.analyze` with --num_heads and --gelu on a bare CLIP state dict."""
    from .conftest import analyze_main

    images = write_images(tmp_path / "images", expected("openai_clip")["images"])
    code = analyze_main(
        f"--checkpoint={FIXTURES / 'openai_clip' / 'model.safetensors'}",
        f"--images={images}",
        f"--out={tmp_path / 'out'}",
        "--num_heads=2",
        "--gelu=quick",
    )
    assert code == 0, capfd.readouterr().err
    record = json.loads((tmp_path / "out" / "locality.json").read_text())
    assert record["num_prefix_tokens"] == 1 and record["patch_size"] == 8


@pytest.mark.parametrize(
    "fixture,extra,message",
    [
        ("timm_clip/model.safetensors", "blocks.0.attn.q_norm.weight",
         "timm vit_base_patch32_clip_224: needs qk_norm (a LayerNorm on queries and keys) support"),
        ("timm_clip/model.safetensors", "blocks.1.mlp.fc1_g.weight",
         "timm vit_base_patch32_clip_224: needs a SwiGLU MLP support"),
        ("openai_clip/model.safetensors", "visual.transformer.resblocks.0.ln_attn.weight",
         "CLIP image tower (OpenAI / OpenCLIP layout): needs scale_attn support"),
    ],
)  # fmt: skip
def test_a_part_this_vit_lacks_is_named_as_the_library_names_it(tmp_path, fixture, extra, message):
    """Weights of an option this ViT does not have: its option's name, not the array's."""
    from vit_locality.external.arrays import read_safetensors

    folder = tmp_path / "ckpt"
    source = FIXTURES / fixture
    shutil.copytree(source.parent, folder)
    state = read_safetensors(source)
    state[extra] = np.ones(8, np.float32)
    write_safetensors(folder / source.name, state)
    kwargs = {"num_heads": 2} if fixture.startswith("openai") else {}
    path = folder / source.name if fixture.startswith("openai") else folder
    with pytest.raises(UserError, match=re.escape(message)):
        load_checkpoint(path, **kwargs)


@pytest.mark.parametrize(
    "arch,width,heads",
    [
        ("vit_base_patch16_224", 768, 12),
        ("vit_so400m_patch14_siglip_384", 1152, 16),  # 1152 / 64 would be 18
        ("vit_giant_patch14_dinov2", 1536, 24),  # "giant" alone would be 16
        ("vit_giant_patch14_clip_224", 1408, 16),
        ("vit_gigantic_patch14_clip_quickgelu_224", 1664, 16),
        ("vit_base_patch16_plus_240", 896, 14),
        ("vit_base_patch16_gap_224", 768, 16),
        ("vit_giantopt_patch16_siglip_384", 1536, 16),
        ("vit_unknownsize_patch16_224", 640, None),  # then width / 64
    ],
)
def test_heads_from_a_timm_name_are_timms(arch, width, heads):
    """Official hub folders (and bare state dicts) say no heads: they come from the name as
    timm's vision_transformer.py defines each model, width included where one size word has two
    head counts."""
    from vit_locality.external.timm import _named_heads

    assert _named_heads(arch, width) == heads


def test_final_ln_after_pool_is_the_layernorm_after_the_pooling(tmp_path):
    """OpenCLIP's final_ln_after_pool: ln_post on the pooled class token, which is the class
    token of ln_post on every token; the same attention and image embedding."""
    folder = tmp_path / "openclip"
    shutil.copytree(FIXTURES / "openclip_hub", folder)
    config = json.loads((folder / "open_clip_config.json").read_text())
    config["model_cfg"]["vision_cfg"]["final_ln_after_pool"] = True
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    loaded = load_checkpoint(folder)
    assert loaded.model.norm_after_pool
    want = expected("openclip_hub")
    logits, out = run(loaded, want["images"])
    assert_close(np.stack(out["attention"]), want["attention"], "attention")
    assert_close(logits, want["logits"], "logits")
