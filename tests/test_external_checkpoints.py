"""Other people's checkpoints against the original libraries' own outputs.

tests/fixtures/checkpoints/ holds tiny ViTs saved by timm and transformers (and timm weights
written in the .npz layouts, checked there by timm's npz reader), each with what the library
computed on a few images (scripts/make_checkpoint_fixtures.py writes them; these tests need
neither torch nor transformers). Loaded into this project's ViT, the logits, the final tokens
and every layer's attention must match, and so must the eval preprocessing of an odd-sized image.
"""

import importlib.util
import json
import re
import shutil
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from vit_locality.errors import UserError
from vit_locality.external import detect_format, load_checkpoint
from vit_locality.external.resample import at_image_size

from .helpers import CHECKPOINT_FIXTURES as FIXTURES
from .helpers import assert_close
from .helpers import checkpoint_outputs as run
from .helpers import expected_outputs as expected

# (fixture, format, prefix tokens, patch size). The .npz fixtures are timm models' weights in
# those layouts (no big_vision library here), so their reference is timm's output, computed with
# the exact GELU: they load with gelu="exact" (the original JAX code's tanh GELU is the default).
CASES = [
    ("timm_vit", "timm", 1, 8),
    ("timm_deit_distilled", "timm", 2, 16),
    ("timm_reg_gap_ls", "timm", 2, 14),
    ("timm_gap_big_vision", "timm", 0, 8),
    ("hf_vit_classifier", "hf", 1, 8),
    ("hf_vit_model", "hf", 1, 8),
    ("hf_deit_distilled", "hf", 2, 16),
    ("npz_vision_transformer/ckpt.npz", "big_vision", 1, 8),
    ("npz_big_vision/ckpt.npz", "big_vision", 0, 8),
    ("npz_big_vision_scanned/ckpt.npz", "big_vision", 0, 8),
]
GELU = {"big_vision": "exact"}


@pytest.mark.parametrize("name,format,prefix,patch", CASES)
def test_outputs_and_attention_match_the_original(name, format, prefix, patch):
    loaded = load_checkpoint(FIXTURES / name, format, gelu=GELU.get(format))
    assert loaded.format == format
    assert (loaded.model.num_prefix_tokens, loaded.model.patch_size) == (prefix, patch)
    want = expected(name)
    np.testing.assert_allclose(loaded.preprocessing.mean, want["mean"], rtol=1e-7)
    np.testing.assert_allclose(loaded.preprocessing.std, want["std"], rtol=1e-7)
    logits, out = run(loaded, want["images"])
    attention = np.stack(out["attention"])
    assert attention.shape == want["attention"].shape
    assert_close(attention, want["attention"], "attention")
    assert_close(out["encoded"], want["encoded"], "encoded")
    if "logits" in want:
        assert_close(logits, want["logits"], "logits")


@pytest.mark.parametrize("name,format", [(c[0], c[1]) for c in CASES if c[1] != "big_vision"])
def test_preprocessing_matches_the_original(name, format):
    """The library's eval preprocessing of an image of another size (resize, centre crop,
    normalise): PIL resamples on both sides, so the uint8 pixels are the same and the
    normalised values differ by float32 rounding only."""
    loaded = load_checkpoint(FIXTURES / name, format)
    want = expected(name)
    pixels = loaded.preprocessing.prepare([Image.fromarray(want["raw_image"])])
    assert pixels.dtype == np.uint8 and pixels.shape == want["preprocessed"].shape
    mean, std = (np.asarray(v, np.float32) for v in (want["mean"], want["std"]))
    normalized = (pixels.astype(np.float32) / 255.0 - mean) / std
    np.testing.assert_allclose(normalized, want["preprocessed"], rtol=0, atol=2e-6)


@pytest.mark.parametrize("name", ["hf_vit_classifier", "hf_deit_distilled"])
def test_preprocessing_against_the_torchvision_image_processor(name):
    """transformers' default image processors resize with torchvision instead of PIL: another
    implementation of the same antialiased filter, which rounds to uint8 at another point. Its
    output differs from ours by at most one uint8 level (1 / 255 / std), in at most 1% of the
    values."""
    loaded = load_checkpoint(FIXTURES / name, "hf")
    want = expected(name)
    pixels = loaded.preprocessing.prepare([Image.fromarray(want["raw_image"])])
    mean, std = (np.asarray(v, np.float32) for v in (want["mean"], want["std"]))
    levels = np.abs((pixels / 255.0 - mean) / std - want["preprocessed_torchvision"]) * std * 255
    assert levels.max() < 1.0 + 1e-4
    assert (levels > 1e-3).mean() <= 0.01


@pytest.mark.parametrize("name,format", [(c[0], c[1]) for c in CASES])
def test_format_is_detected(name, format):
    assert detect_format(FIXTURES / name) == format


def test_a_checkpoint_with_weights_the_vit_lacks_is_refused(tmp_path):
    """A representation layer (the original ViT's in21k `pre_logits`) is not silently dropped."""
    arrays = dict(np.load(FIXTURES / "npz_vision_transformer" / "ckpt.npz"))
    arrays["pre_logits/kernel"] = np.zeros((16, 16), np.float32)
    np.savez(tmp_path / "in21k.npz", **arrays)
    with pytest.raises(UserError, match=r"vision_transformer ViT with weights this ViT does not "
                       r"have: pre_logits/kernel$"):  # fmt: skip
        load_checkpoint(tmp_path / "in21k.npz")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"format": "keras"},
            "--format='keras' is not allowed: one of timm, big_vision, hf, clip, torchvision, "
            "project",
        ),
        ({"gelu": "relu"}, "--gelu='relu' is not allowed: one of exact, tanh, quick"),
    ],
)
def test_bad_format_or_gelu_is_one_line(kwargs, message):
    with pytest.raises(UserError) as error:
        load_checkpoint(FIXTURES / "timm_vit", **kwargs)
    assert str(error.value) == message


def test_a_folder_of_no_known_format_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"is not a checkpoint this reads: a timm hub folder"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("name", ["timm_vit", "timm_reg_gap_ls"])
def test_another_image_size_resamples_the_position_embedding_as_timm(name):
    """timm with dynamic_img_size=True on images of another size (32 -> 48 px with the class
    token's position kept apart; 56 -> 42 px, shrinking, no prefix positions): same logits and
    attention."""
    want = expected(name)
    size = want["other_images"].shape[1]
    loaded = at_image_size(load_checkpoint(FIXTURES / name), (size, size))
    assert loaded.image_size == (size, size)
    logits, out = run(loaded, want["other_images"])
    assert_close(np.stack(out["attention"]), want["other_attention"], "attention")
    assert_close(logits, want["other_logits"], "logits")


def test_an_image_size_off_the_patch_grid_is_one_line():
    with pytest.raises(UserError, match=r"^--image_size=36 is not allowed: a multiple of the "):
        at_image_size(load_checkpoint(FIXTURES / "timm_vit"), (36, 36))


TIMM_FOLDERS = [c[0] for c in CASES if c[1] == "timm"]


@pytest.mark.parametrize("name", TIMM_FOLDERS)
def test_a_bare_state_dict_with_its_timm_name_matches_the_original(tmp_path, name):
    """model.safetensors alone, with timm's model name from its config.json and the heads (the
    fixtures are narrower than their names): the same model, transform and outputs."""
    weights = tmp_path / f"{name}.safetensors"
    weights.write_bytes((FIXTURES / name / "model.safetensors").read_bytes())
    arch = json.loads((FIXTURES / name / "config.json").read_text())["architecture"]
    assert detect_format(weights) == "timm"
    loaded = load_checkpoint(weights, arch=arch, num_heads=2)
    folder = load_checkpoint(FIXTURES / name)
    assert loaded.model == folder.model and loaded.preprocessing == folder.preprocessing
    want = expected(name)
    logits, out = run(loaded, want["images"])
    assert_close(np.stack(out["attention"]), want["attention"], "attention")
    assert_close(logits, want["logits"], "logits")


@pytest.mark.parametrize(
    "arch, message",
    [
        (None, "is a bare state dict: --arch=NAME is required, timm's model name (vit_* or "),
        ("resnet50", "is a bare state dict: --arch=NAME is required, timm's model name (vit_* "),
        ("vit_small_patch16_224", "width 16 is not divisible by 6 heads"),  # small: 6 heads
    ],
)
def test_a_bare_state_dict_without_a_fitting_timm_name_is_one_line(tmp_path, arch, message):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes((FIXTURES / "timm_vit" / "model.safetensors").read_bytes())
    with pytest.raises(UserError, match=re.escape(message)):
        load_checkpoint(weights, arch=arch)


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch installed")
def test_a_pth_without_torch_is_one_line(tmp_path):
    weights = tmp_path / "deit.pth"
    weights.write_bytes(b"not read")
    with pytest.raises(UserError, match=r"reading a \.pth needs PyTorch \(pip install torch\)"):
        load_checkpoint(weights, arch="deit_tiny_patch16_224")


class StandInTorch:
    """`torch` where PyTorch is not installed (it is not in this project's environment): its
    `load` raises what PyTorch's zip reader raises on a damaged .pth, or returns `state`."""

    class Tensor:
        def __init__(self, values):
            self.values = np.asarray(values, np.float32)

        def float(self):
            return self

        def numpy(self):
            return self.values

    def __init__(self, state=None):
        self.state = state

    def load(self, path, **kwargs):
        if self.state is None:
            raise RuntimeError(
                "PytorchStreamReader failed reading file data/0: invalid header or archive is "
                "corrupted"
            )
        return self.state


@pytest.mark.parametrize(
    "state, message",
    [
        (None, " is damaged or not a state dict: torch.load says PytorchStreamReader failed "
         "reading file data/0: invalid header or archive is corrupted"),
        ({"model": {"cls_token": StandInTorch.Tensor([[[np.nan, 0.0]]])}},
         ": tensor cls_token holds NaN or infinite numbers: its data is damaged (a trained ViT "
         "holds neither)"),
    ],
)  # fmt: skip
def test_a_damaged_pth_is_one_line(tmp_path, monkeypatch, state, message):
    """What torch.load raises on a damaged file, or NaN in what it read, is one line naming the
    file; with a stand-in for torch (see StandInTorch), so what is tested is this reader's side,
    not PyTorch's. A .pth cut short is found without torch (test_analyze_checkpoint)."""
    weights = tmp_path / "deit.pth"
    with zipfile.ZipFile(weights, "w") as archive:  # a whole zip, as torch writes
        archive.writestr("archive/data.pkl", b"read by torch")
    monkeypatch.setitem(sys.modules, "torch", StandInTorch(state))
    with pytest.raises(UserError) as error:
        load_checkpoint(weights, arch="deit_tiny_patch16_224")
    assert str(error.value) == f"{weights}{message}"


def test_a_hub_folder_without_model_args_takes_the_heads_its_name_says(tmp_path):
    """Official timm hub folders have no model_args: `vit_tiny_*` means 3 heads (width 16 does
    not split into 3), not width / 64."""
    folder = tmp_path / "timm_vit"
    shutil.copytree(FIXTURES / "timm_vit", folder)
    config = json.loads((folder / "config.json").read_text())
    del config["model_args"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"^width 16 is not divisible by 3 heads$"):
        load_checkpoint(folder)


def test_a_legacy_hugging_face_size_is_a_square(tmp_path):
    """preprocessor_config.json of older checkpoints (google/vit-base-patch16-224): "size": 224."""
    folder = tmp_path / "hf_vit_classifier"
    shutil.copytree(FIXTURES / "hf_vit_classifier", folder)
    config = json.loads((folder / "preprocessor_config.json").read_text())
    side = config["size"]["height"]
    assert config["size"] == {"height": side, "width": side}
    (folder / "preprocessor_config.json").write_text(json.dumps({**config, "size": side}))
    legacy = load_checkpoint(folder).preprocessing
    assert legacy == load_checkpoint(FIXTURES / "hf_vit_classifier").preprocessing
