"""Writes tests/fixtures/checkpoints/: tiny ViT checkpoints in other people's formats, each with
the original library's outputs on a few images, for tests/test_external_checkpoints.py.

Needs torch, torchvision, timm, transformers, open_clip_torch and safetensors (not this
project's dependencies; the tests read the files without them). From the repository root, in a
separate environment:

    python3 -m venv /tmp/fixvenv
    /tmp/fixvenv/bin/pip install torch torchvision timm transformers open_clip_torch safetensors
    /tmp/fixvenv/bin/python scripts/make_checkpoint_fixtures.py [--towers]

(timm imports torchvision: it must be the build that matches torch, e.g. both CPU wheels.) Made
with torch 2.13.0 (CPU), timm 1.0.31 and transformers 5.24.0; run again with torch 2.14.1,
torchvision 0.29.1, timm 1.0.31, transformers 5.24.0 and open_clip_torch 3.3.0, it writes the
same files. `--towers` writes only the fixtures of issue 31 (below, TOWERS).

Every model has random weights (normal draws, so that biases, tokens, position embeddings and
layer scales all matter; LayerNorm scales near 1), a few layers and a tiny width, and runs on
2 random uint8 images. Each fixture folder holds the checkpoint as its library saves it and
`expected.npz`:

- `images`: uint8 [B, H, W, 3], what the model sees before normalisation,
- `mean`, `std`: float32 [3], the normalisation the library's preprocessing config names,
- `logits`: float32 [B, C] (absent for a model without a head),
- `encoded`: float32 [B, T, D], the tokens after the last block and the final LayerNorm
  (timm's `forward_features`, Hugging Face's `last_hidden_state`),
- `attention`: float32 [L, B, H, T, T], every layer's post-softmax attention,
- (`timm_vit`, `timm_reg_gap_ls`) `other_images`, `other_logits`, `other_attention`: the same on
  images of another size, the position embedding resampled by timm (`dynamic_img_size=True`),
- `raw_image`: uint8 [h, w, 3] of another size, and `preprocessed`: float32 [1, H, W, 3], what
  the library's own eval preprocessing (timm's transform from pretrained_cfg, the Hugging Face
  image processor's PIL backend) makes of it; Hugging Face fixtures add
  `preprocessed_torchvision`, from its default (torchvision) backend.

timm: `timm_vit` (class token, position embedding over it), `timm_deit_distilled` (class and
distillation tokens, two heads), `timm_reg_gap_ls` (register tokens and no class token, the
position embedding on the patches only, GAP with the LayerNorm after the pooling, layer scale,
no qkv bias, patch 14), each a hub folder written by timm's `save_for_hf` (config.json +
model.safetensors).
The attention comes from timm's unfused path (`set_fused_attn(False)`), read off `attn_drop`.

Hugging Face: `hf_vit_classifier` (ViTForImageClassification), `hf_vit_model` (ViTModel, with
its pooler), `hf_deit_distilled` (DeiTForImageClassificationWithTeacher), each `save_pretrained`
(config.json + model.safetensors) plus its image processor's preprocessor_config.json, run with
`attn_implementation="eager"` and `output_attentions=True`.

.npz: no big_vision or vision_transformer library is installed here, so these are timm models'
weights written in each layout (`npz_vision_transformer`: the original ViT code's keys;
`npz_big_vision` and `npz_big_vision_scanned`: `params/` keys, GAP, no class token, blocks under
`encoderblock_i/` or stacked under `encoderblock/`). Each is checked here by loading it back
with timm's own npz reader (`timm.models.vision_transformer._load_weights`) and requiring the
same outputs, and the expectation is that timm model's output (exact GELU, as timm computes; the
original JAX code uses the tanh GELU).

CLIP, SigLIP, DINOv2, torchvision (TOWERS): timm `timm_clip` (vit_base_patch32_clip_224:
norm_pre, no patch bias, LayerNorm eps 1e-5), `timm_clip_quickgelu`, `timm_siglip` (the MAP
head; `logits` are its output, which the loaded model does not reproduce), and `timm_eva02`,
`timm_dinov3` (rotary position embedding: only refused, so no expected.npz); open_clip
`openclip_hub` (an open_clip.CLIP with layer scale, GELU, as its hub folder),
`openclip_timm_siglip` (its tower a tiny timm SigLIP-shaped trunk, registered here) and
`openai_clip`
(QuickGELU, OpenAI's state-dict layout, a bare .safetensors; its 16-wide tower has 2 heads, which
OpenAI's width / 64 rule cannot say: loaded with num_heads=2); `torchvision_vit` (a tiny
torchvision VisionTransformer's state dict as .safetensors, `preprocessed` by its
ImageClassification with the SWAG weights' settings); Hugging Face `hf_clip` (CLIPModel, logits
= image_embeds), `hf_clip_vision`, `hf_siglip_vision` (no logits: its pooler is the MAP head),
`hf_dinov2`, `hf_dinov2_registers`. PyTorch's nn.MultiheadAttention (open_clip, torchvision) is
called with need_weights=False: the maps come from calling each module again on the inputs a
hook caught, with need_weights=True and per-head weights.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pathlib
import shutil
import sys
from functools import partial

import numpy as np
import timm
import timm.layers
import torch
import transformers
from timm.models import _hub
from timm.models.vision_transformer import _load_weights

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "checkpoints"
NUM_IMAGES = 2


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Every parameter drawn again: N(1, 0.2) for LayerNorm scales, N(0, 0.3) otherwise."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                noise = torch.randn(p.shape, generator=gen)
                is_ln_scale = isinstance(module, torch.nn.LayerNorm) and name == "weight"
                p.copy_(1.0 + 0.2 * noise if is_ln_scale else 0.3 * noise)


def random_images(size: int, seed: int) -> np.ndarray:
    """uint8 [B, size, size, 3]."""
    return np.random.default_rng(seed).integers(0, 256, (NUM_IMAGES, size, size, 3), np.uint8)


def normalized(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float32 NCHW (x / 255 - mean) / std, as the JAX side computes it."""
    x = (images.astype(np.float32) / np.float32(255.0) - mean) / std
    return torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2).contiguous()


def to_nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy().astype(np.float32)


def write_expected(folder: pathlib.Path, **arrays: np.ndarray) -> None:
    np.savez_compressed(folder / "expected.npz", **arrays)


# ----------------------------------------------------------------------------------------- timm


def timm_attention(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, ...]:
    """(logits, encoded, attention [L, B, H, T, T]) of a timm ViT in eval mode."""
    maps = []
    hooks = [
        block.attn.attn_drop.register_forward_hook(lambda m, i, o: maps.append(o.detach()))
        for block in model.blocks
    ]
    with torch.no_grad():
        encoded = model.forward_features(x)
        logits = model.forward_head(encoded)
    for hook in hooks:
        hook.remove()
    assert len(maps) == len(model.blocks), "timm's fused attention is on: no maps"
    return logits.numpy(), encoded.numpy(), torch.stack(maps).numpy()


def timm_preprocessed(folder: pathlib.Path, raw: np.ndarray) -> np.ndarray:
    """timm's own eval transform, made from the hub folder's pretrained_cfg, on one raw image."""
    from PIL import Image

    cfg = json.loads((folder / "config.json").read_text())["pretrained_cfg"]
    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    transform = timm.data.create_transform(**{k: cfg[k] for k in keys}, is_training=False)
    return to_nhwc(transform(Image.fromarray(raw))[None])


def make_timm(
    name: str, arch: str, seed: int, other_size: int | None = None, **model_args
) -> torch.nn.Module:
    """The fixture `name` of `timm.create_model(arch, **model_args)` with random weights; with
    `other_size`, also its outputs on images of that size (`other_images`, `other_logits`,
    `other_attention`) from the same weights in a model with `dynamic_img_size=True`, which
    resamples the position embedding with timm's `resample_abs_pos_embed`."""
    model = timm.create_model(arch, pretrained=False, **model_args).eval()
    image_size = model_args["img_size"]
    randomize(model, seed)
    folder = OUT / name
    _hub.save_for_hf(model, folder, safe_serialization=True)
    cfg = json.loads((folder / "config.json").read_text())["pretrained_cfg"]
    mean, std = (np.asarray(cfg[k], np.float32) for k in ("mean", "std"))
    images = random_images(image_size, seed)
    logits, encoded, attention = timm_attention(model, normalized(images, mean, std))
    raw = np.random.default_rng(seed + 100).integers(0, 256, (image_size + 9, image_size + 21, 3))
    raw = raw.astype(np.uint8)
    arrays = dict(images=images, mean=mean, std=std, logits=logits, encoded=encoded)
    arrays.update(attention=attention, raw_image=raw, preprocessed=timm_preprocessed(folder, raw))
    if other_size:
        dynamic = timm.create_model(arch, pretrained=False, dynamic_img_size=True, **model_args)
        dynamic.load_state_dict(model.state_dict())
        other = random_images(other_size, seed + 200)
        other_logits, _, other_attention = timm_attention(
            dynamic.eval(), normalized(other, mean, std)
        )
        arrays.update(other_images=other, other_logits=other_logits)
        arrays.update(other_attention=other_attention)
    write_expected(folder, **arrays)
    return model


# ------------------------------------------------------------------------------ Hugging Face


def make_hf(name: str, model_cls: type, config, processor: str, seed: int, **size) -> None:
    """The fixture `name` of `model_cls(config)` with random weights and the image processor
    `transformers.{processor}ImageProcessor(**size)` (torchvision backend, transformers' default)
    saved beside it; `preprocessed` is what its PIL backend (`...ImageProcessorPil`, the slow
    processor of transformers 4) makes of the raw image, `preprocessed_torchvision` what the
    default makes of it."""
    module = importlib.import_module(
        f"transformers.models.{processor.lower()}.image_processing_pil_{processor.lower()}"
    )
    pil = getattr(module, f"{processor}ImageProcessorPil")(**size)
    processor = getattr(transformers, f"{processor}ImageProcessor")(**size)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    randomize(model, seed)
    folder = OUT / name
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    mean, std = (np.asarray(getattr(processor, k), np.float32) for k in ("image_mean", "image_std"))
    images = random_images(config.image_size, seed)
    x = normalized(images, mean, std)
    with torch.no_grad():
        out = model(pixel_values=x, output_attentions=True, output_hidden_states=True)
        # hidden_states[-1] is the last block's output; the encoder's final LayerNorm follows.
        base = getattr(model, "vit", None) or getattr(model, "deit", None) or model
        encoded = base.layernorm(out.hidden_states[-1])
    arrays = {
        "images": images,
        "mean": mean,
        "std": std,
        "encoded": encoded.numpy(),
        "attention": torch.stack(out.attentions).numpy(),
    }
    if hasattr(out, "logits"):
        arrays["logits"] = out.logits.numpy()
    raw = np.random.default_rng(seed + 100).integers(0, 256, (config.image_size + 9, 50, 3))
    arrays["raw_image"] = raw.astype(np.uint8)
    for key, proc in (("preprocessed", pil), ("preprocessed_torchvision", processor)):
        pixel_values = proc(images=[arrays["raw_image"]], return_tensors="pt")["pixel_values"]
        arrays[key] = to_nhwc(pixel_values)
    write_expected(folder, **arrays)


# -------------------------------------------------------------------------------------- .npz


def timm_to_npz(model: torch.nn.Module, *, big_vision: bool, scanned: bool) -> dict:
    """A timm ViT's weights in the original ViT code's (or big_vision's) .npz layout: the
    inverse of timm's `_load_weights`."""
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    width = sd["cls_token"].shape[-1] if "cls_token" in sd else sd["pos_embed"].shape[-1]
    heads = model.blocks[0].attn.num_heads
    prefix = "params/" if big_vision else ""
    w = {
        "embedding/kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
        "embedding/bias": sd["patch_embed.proj.bias"],
        "Transformer/encoder_norm/scale": sd["norm.weight"],
        "Transformer/encoder_norm/bias": sd["norm.bias"],
        "head/kernel": sd["head.weight"].T,
        "head/bias": sd["head.bias"],
    }
    w["pos_embedding" if big_vision else "Transformer/posembed_input/pos_embedding"] = sd[
        "pos_embed"
    ]
    if "cls_token" in sd:
        w["cls"] = sd["cls_token"]
    mha, ln2, mlp = ("MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0")
    if not big_vision:
        mha, ln2, mlp = ("MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3")
    blocks = []
    for i in range(len(model.blocks)):
        b = f"blocks.{i}."
        qkv_w = sd[b + "attn.qkv.weight"].reshape(3, heads, width // heads, width)
        qkv_b = sd[b + "attn.qkv.bias"].reshape(3, heads, width // heads)
        block = {
            "LayerNorm_0/scale": sd[b + "norm1.weight"],
            "LayerNorm_0/bias": sd[b + "norm1.bias"],
            f"{ln2}/scale": sd[b + "norm2.weight"],
            f"{ln2}/bias": sd[b + "norm2.bias"],
            f"{mha}/out/kernel": sd[b + "attn.proj.weight"].T.reshape(heads, -1, width),
            f"{mha}/out/bias": sd[b + "attn.proj.bias"],
            f"{mlp}/Dense_0/kernel": sd[b + "mlp.fc1.weight"].T,
            f"{mlp}/Dense_0/bias": sd[b + "mlp.fc1.bias"],
            f"{mlp}/Dense_1/kernel": sd[b + "mlp.fc2.weight"].T,
            f"{mlp}/Dense_1/bias": sd[b + "mlp.fc2.bias"],
        }
        for j, n in enumerate(("query", "key", "value")):
            block[f"{mha}/{n}/kernel"] = qkv_w[j].transpose(2, 0, 1)  # [D, H, hd]
            block[f"{mha}/{n}/bias"] = qkv_b[j]
        blocks.append(block)
    if scanned:
        for k in blocks[0]:
            w[f"Transformer/encoderblock/{k}"] = np.stack([blk[k] for blk in blocks])
    else:
        for i, blk in enumerate(blocks):
            w.update({f"Transformer/encoderblock_{i}/{k}": v for k, v in blk.items()})
    return {prefix + k: v for k, v in w.items()}


def make_npz(name: str, model: torch.nn.Module, expected_from: str, **layout) -> None:
    """`name/ckpt.npz` from `model` (the timm fixture `expected_from`) in `layout`, verified by
    timm's own npz loader into a new model of the same architecture; the expectation is the
    timm fixture's."""
    folder = OUT / name
    folder.mkdir(parents=True)
    np.savez(folder / "ckpt.npz", **timm_to_npz(model, **layout))
    config = json.loads((OUT / expected_from / "config.json").read_text())
    reloaded = timm.create_model(
        config["architecture"], pretrained=False, **config["model_args"]
    ).eval()
    _load_weights(reloaded, str(folder / "ckpt.npz"))
    expected = dict(np.load(OUT / expected_from / "expected.npz"))
    x = normalized(expected["images"], expected["mean"], expected["std"])
    logits, encoded, attention = timm_attention(reloaded, x)
    np.testing.assert_array_equal(logits, expected["logits"])
    np.testing.assert_array_equal(attention, expected["attention"])
    kept = ("images", "mean", "std", "logits", "encoded", "attention")  # not timm's preprocessing
    write_expected(folder, **{k: expected[k] for k in kept})


# ------------------------------------------------- CLIP, SigLIP, DINOv2, torchvision, RoPE ViTs

TOWERS = (
    "openclip_timm_siglip",
    "timm_clip",
    "timm_clip_quickgelu",
    "timm_siglip",
    "timm_eva02",
    "timm_dinov3",
    "openclip_hub",
    "openai_clip",
    "torchvision_vit",
    "hf_clip",
    "hf_clip_vision",
    "hf_siglip_vision",
    "hf_dinov2",
    "hf_dinov2_registers",
)


def mha_attention(modules: list, run) -> list[torch.Tensor]:
    """Per-head maps [B, H, T, T] of PyTorch `nn.MultiheadAttention` modules, which the models
    call with need_weights=False: each module's inputs are caught by a hook and the module is
    called again on them with need_weights=True, average_attn_weights=False."""
    maps = []

    def hook(module, args, kwargs, output):
        q, k, v = (list(args) + [kwargs.get(n) for n in ("query", "key", "value")])[:3]
        _, weights = torch.nn.MultiheadAttention.forward(  # forward: hooks not called again
            module,
            q,
            k,
            v,
            need_weights=True,
            average_attn_weights=False,
            attn_mask=kwargs.get("attn_mask"),
        )
        maps.append(weights.detach())

    hooks = [m.register_forward_hook(hook, with_kwargs=True) for m in modules]
    with torch.no_grad():
        result = run()
    for h in hooks:
        h.remove()
    assert len(maps) == len(modules)
    return result, maps


def smooth_image(height: int, width: int) -> np.ndarray:
    """uint8 [height, width, 3] of slow waves (tests/test_external_towers.py makes the same)."""
    i, j = np.mgrid[:height, :width].astype(np.float64)
    waves = [np.sin(i / 7) * np.cos(j / 11), np.sin((i + j) / 13), np.cos(i / 5 - j / 9)]
    return np.round(127.5 + 127 * np.stack(waves, -1)).astype(np.uint8)


def raw_image(seed: int, size: int) -> np.ndarray:
    raw = np.random.default_rng(seed + 100).integers(0, 256, (size + 9, size + 21, 3))
    return raw.astype(np.uint8)


def make_timm_refused(name: str, arch: str, seed: int, **model_args) -> None:
    """A timm model of eva.py (rotary position embedding) saved by timm: refused with one line."""
    model = timm.create_model(arch, pretrained=False, **model_args).eval()
    randomize(model, seed)
    _hub.save_for_hf(model, OUT / name, safe_serialization=True)


def make_openclip(seed: int) -> None:
    """`openclip_hub`: an OpenCLIP model (GELU, layer scale) saved as its hub folder
    (`save_config_for_hf` + open_clip_model.safetensors: `save_for_hf` without the tokenizer);
    `openai_clip`: an OpenAI-layout CLIP (QuickGELU; open_clip's CLIP state dict has OpenAI's
    keys, which `build_model_from_openai_state_dict` reads) as a bare `.safetensors`."""
    import open_clip
    import safetensors.torch
    from open_clip.push_to_hf_hub import save_config_for_hf
    from PIL import Image

    text_cfg = dict(context_length=4, vocab_size=8, width=8, heads=1, layers=1)
    for name, quick, extra in (
        ("openclip_hub", False, dict(head_width=8, ls_init_value=0.1)),
        ("openai_clip", True, dict(head_width=8)),
    ):
        vision_cfg = dict(image_size=32, patch_size=8, width=16, layers=2, **extra)
        model_cfg = dict(embed_dim=5, quick_gelu=quick, vision_cfg=vision_cfg, text_cfg=text_cfg)
        model = open_clip.CLIP(**model_cfg).eval()
        randomize(model, seed)
        # what open_clip.create_model sets without a pretrained config
        model.visual.image_mean = open_clip.constants.OPENAI_DATASET_MEAN
        model.visual.image_std = open_clip.constants.OPENAI_DATASET_STD
        folder = OUT / name
        folder.mkdir(parents=True)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if name == "openclip_hub":
            safetensors.torch.save_file(state, folder / "open_clip_model.safetensors")
            save_config_for_hf(model, folder / "open_clip_config.json", model_cfg)
        else:
            # OpenAI's keys (build_model_from_openai_state_dict's input; it takes heads as
            # width / 64, so it cannot rebuild this narrow tower)
            assert {"visual.proj", "visual.class_embedding", "text_projection"} <= set(state)
            safetensors.torch.save_file(state, folder / "model.safetensors")
        mean, std = (
            np.asarray(v, np.float32) for v in (model.visual.image_mean, model.visual.image_std)
        )
        images = random_images(32, seed)
        x = normalized(images, mean, std)
        visual = model.visual
        tokens = []
        hook = visual.ln_post.register_forward_hook(lambda m, i, o, t=tokens: t.append(o.detach()))
        logits, maps = mha_attention(
            [b.attn for b in visual.transformer.resblocks], partial(model.encode_image, x)
        )
        hook.remove()
        raw = raw_image(seed, 32)
        transform = open_clip.image_transform(
            32, is_train=False, mean=tuple(mean.tolist()), std=tuple(std.tolist())
        )
        arrays = dict(
            images=images,
            mean=mean,
            std=std,
            logits=logits.numpy(),
            encoded=tokens[0].numpy(),
            attention=torch.stack(maps).numpy(),
            raw_image=raw,
            preprocessed=to_nhwc(transform(Image.fromarray(raw))[None]),
        )
        write_expected(folder, **arrays)
        seed += 1


def vit_tiny_patch8_siglip_32(pretrained=False, pretrained_cfg=None, **kwargs):
    """A tiny SigLIP-shaped timm ViT (no class token, MAP pooling; 24 wide, 3 heads as `tiny`
    says) registered for `openclip_timm_siglip`: OpenCLIP builds timm trunks by name only."""
    from timm.models.vision_transformer import VisionTransformer

    accepted = inspect.signature(VisionTransformer).parameters  # not cache_dir and the like
    args = dict(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=3, mlp_ratio=2.0)
    args.update(class_token=False, global_pool="map")
    args.update({k: v for k, v in kwargs.items() if k in accepted})
    return VisionTransformer(**args)


def make_openclip_timm(seed: int) -> None:
    """`openclip_timm_siglip`: an OpenCLIP model whose image tower is a timm trunk (as OpenCLIP's
    SigLIP models are: timm_model_name, timm_pool "map", timm_proj "none"), as its hub folder with
    SigLIP's preprocess_cfg (mean / std 0.5, bicubic, squash). `logits` are the trunk's MAP
    output, not reproduced by the loaded model; the attention is timm's (`timm_attention`)."""
    import open_clip
    import safetensors.torch
    from open_clip.push_to_hf_hub import save_config_for_hf
    from PIL import Image
    from timm.models import register_model

    if "vit_tiny_patch8_siglip_32" not in timm.list_models("vit_tiny_patch8_siglip_32"):
        register_model(vit_tiny_patch8_siglip_32)
    vision_cfg = dict(
        timm_model_name="vit_tiny_patch8_siglip_32",
        timm_model_pretrained=False,
        timm_pool="map",
        timm_proj="none",
        image_size=32,
    )
    text_cfg = dict(context_length=4, vocab_size=8, width=8, heads=1, layers=1)
    model_cfg = dict(embed_dim=24, vision_cfg=vision_cfg, text_cfg=text_cfg)
    model = open_clip.CLIP(**model_cfg).eval()
    randomize(model, seed)
    prep = dict(mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic", resize_mode="squash")
    model.visual.image_mean, model.visual.image_std = prep["mean"], prep["std"]
    model.visual.preprocess_cfg = prep  # what create_model sets from a SigLIP model config
    folder = OUT / "openclip_timm_siglip"
    folder.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, folder / "open_clip_model.safetensors")
    save_config_for_hf(model, folder / "open_clip_config.json", model_cfg)
    mean, std = np.float32(prep["mean"]), np.float32(prep["std"])
    images = random_images(32, seed)
    logits, encoded, attention = timm_attention(model.visual.trunk, normalized(images, mean, std))
    with torch.no_grad():
        features = model.encode_image(normalized(images, mean, std)).numpy()
    np.testing.assert_allclose(features, logits, rtol=1e-6, atol=1e-6)  # encode_image: the trunk
    raw = raw_image(seed, 32)
    transform = open_clip.image_transform(32, is_train=False, **prep)
    arrays = dict(images=images, mean=mean, std=std, logits=logits, encoded=encoded)
    arrays.update(attention=attention, raw_image=raw)
    arrays["preprocessed"] = to_nhwc(transform(Image.fromarray(raw))[None])
    write_expected(folder, **arrays)


def make_torchvision(seed: int) -> None:
    """`torchvision_vit`: torchvision's VisionTransformer (vit_b_16's layout, tiny) as a bare
    state dict in `.safetensors`; `preprocessed` from torchvision's `ImageClassification` as its
    SWAG weights configure it (resize to the crop size, bicubic), the fixture not being 224 px."""
    import safetensors.torch
    import torchvision
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F
    from torchvision.transforms._presets import ImageClassification

    model = torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=5,
    ).eval()
    randomize(model, seed)
    folder = OUT / "torchvision_vit"
    folder.mkdir(parents=True)
    safetensors.torch.save_file(model.state_dict(), folder / "model.safetensors")
    mean, std = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])
    images = random_images(32, seed)
    x = normalized(images, mean, std)
    tokens = []
    hook = model.encoder.ln.register_forward_hook(lambda m, i, o: tokens.append(o.detach()))
    logits, maps = mha_attention(
        [layer.self_attention for layer in model.encoder.layers], lambda: model(x)
    )
    hook.remove()
    raw = raw_image(seed, 32)
    transform = ImageClassification(
        crop_size=32, resize_size=32, interpolation=InterpolationMode.BICUBIC
    )
    arrays = dict(
        images=images,
        mean=mean,
        std=std,
        logits=logits.numpy(),
        encoded=tokens[0].numpy(),
        attention=torch.stack(maps).numpy(),
        raw_image=raw,
        preprocessed=to_nhwc(transform(Image.fromarray(raw))[None]),
    )
    # IMAGENET1K_V1's transform (vit_b_16 at 224 px) on a smooth image, as uint8 pixels before
    # its float conversion (every 4th row and column): what a 224-px torchvision ViT must get
    v1 = ImageClassification(crop_size=224)  # resize 256, bilinear; its forward's first steps:
    image = Image.fromarray(smooth_image(240, 300))
    image = F.resize(image, v1.resize_size, interpolation=v1.interpolation, antialias=True)
    arrays["pixels_224"] = np.asarray(F.center_crop(image, v1.crop_size))[::4, ::4]  # 56 x 56
    write_expected(folder, **arrays)


def make_hf_tower(name: str, model_cls, config, processor: str, seed: int, **size) -> None:
    """A Hugging Face CLIP / SigLIP / DINOv2 model with random weights and its image processor
    (saved as transformers' default saves it; `preprocessed` from its PIL backend). `encoded`
    is `last_hidden_state` (CLIP's is before post_layernorm, SigLIP's and DINOv2's after their
    final LayerNorm); `logits` the pooled output the library gives (CLIPModel's image_embeds,
    CLIPVisionModel's and Dinov2Model's pooler_output; none for SigLIP, whose pooler is its MAP
    head)."""
    module = importlib.import_module(
        f"transformers.models.{processor.lower()}.image_processing_pil_{processor.lower()}"
    )
    pil = getattr(module, f"{processor}ImageProcessorPil")(**size)
    default = getattr(transformers, f"{processor}ImageProcessor")(**size)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    randomize(model, seed)
    folder = OUT / name
    model.save_pretrained(folder, safe_serialization=True)
    default.save_pretrained(folder)
    mean, std = (np.asarray(getattr(default, k), np.float32) for k in ("image_mean", "image_std"))
    vision = getattr(config, "vision_config", config)
    images = random_images(vision.image_size, seed)
    x = normalized(images, mean, std)
    with torch.no_grad():
        tower = (
            model.vision_model
            if hasattr(model, "visual_projection") and hasattr(model, "text_model")
            else model
        )
        out = tower(pixel_values=x, output_attentions=True)
        arrays = dict(
            images=images,
            mean=mean,
            std=std,
            encoded=out.last_hidden_state.numpy(),
            attention=torch.stack(out.attentions).numpy(),
        )
        if tower is not model:
            arrays["logits"] = model.visual_projection(out.pooler_output).numpy()
        elif "Siglip" not in model_cls.__name__:
            arrays["logits"] = out.pooler_output.numpy()
    raw = raw_image(seed, vision.image_size)
    arrays["raw_image"] = raw
    arrays["preprocessed"] = to_nhwc(pil(images=[raw], return_tensors="pt")["pixel_values"])
    pixel_values = default(images=[raw], return_tensors="pt")["pixel_values"]
    arrays["preprocessed_torchvision"] = to_nhwc(pixel_values)  # the default backend's
    write_expected(folder, **arrays)


def make_towers() -> None:
    for name in TOWERS:
        shutil.rmtree(OUT / name, ignore_errors=True)
    small = dict(embed_dim=16, depth=2, num_heads=2, img_size=32, patch_size=8)
    make_timm("timm_clip", "vit_base_patch32_clip_224", 10, num_classes=5, **small)
    make_timm(
        "timm_clip_quickgelu", "vit_base_patch16_clip_quickgelu_224", 11, num_classes=5, **small
    )
    make_timm("timm_siglip", "vit_base_patch16_siglip_224", 12, num_classes=0, **small)
    tiny = dict(embed_dim=16, depth=1, num_heads=2, img_size=32, patch_size=8, num_classes=0)
    make_timm_refused("timm_eva02", "eva02_tiny_patch14_224", 13, **tiny)
    make_timm_refused("timm_dinov3", "vit_small_patch16_dinov3", 14, **tiny)
    make_openclip(15)
    make_openclip_timm(23)
    make_torchvision(17)
    hf = dict(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=32,
        patch_size=8,
        attn_implementation="eager",
    )
    clip_size = dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    make_hf_tower(
        "hf_clip_vision",
        transformers.CLIPVisionModel,
        transformers.CLIPVisionConfig(**hf),
        "CLIP",
        18,
        **clip_size,
    )
    text = dict(
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=8,
        vocab_size=8,
        max_position_embeddings=4,
    )
    vision = {k: v for k, v in hf.items() if k != "attn_implementation"}
    make_hf_tower(
        "hf_clip",
        transformers.CLIPModel,
        transformers.CLIPConfig(
            vision_config=vision, text_config=text, projection_dim=5, attn_implementation="eager"
        ),
        "CLIP",
        19,
        **clip_size,
    )
    make_hf_tower(
        "hf_siglip_vision",
        transformers.SiglipVisionModel,
        transformers.SiglipVisionConfig(**hf),
        "Siglip",
        20,
        size={"height": 32, "width": 32},
    )
    bit_size = dict(size={"shortest_edge": 37}, crop_size={"height": 32, "width": 32})
    make_hf_tower(
        "hf_dinov2",
        transformers.Dinov2Model,
        transformers.Dinov2Config(**hf),
        "Bit",
        21,
        **bit_size,
    )
    make_hf_tower(
        "hf_dinov2_registers",
        transformers.Dinov2WithRegistersModel,
        transformers.Dinov2WithRegistersConfig(num_register_tokens=2, **hf),
        "Bit",
        22,
        **bit_size,
    )
    for name in TOWERS:
        size = sum(p.stat().st_size for p in (OUT / name).rglob("*") if p.is_file())
        print(f"{name}: {size / 1024:.0f} KiB")


def main() -> None:
    timm.layers.set_fused_attn(False)
    if sys.argv[1:] == ["--towers"]:  # only the fixtures of CLIP, SigLIP, DINOv2, torchvision
        make_towers()
        return
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    small = dict(embed_dim=16, depth=2, num_heads=2, num_classes=5)
    vit = make_timm(
        "timm_vit", "vit_tiny_patch16_224", 0, other_size=48, img_size=32, patch_size=8, **small
    )
    make_timm("timm_deit_distilled", "deit_tiny_distilled_patch16_224", 1, img_size=64, **small)
    make_timm(
        "timm_reg_gap_ls",
        "vit_base_patch16_reg4_gap_256",
        2,
        other_size=42,
        img_size=56,
        patch_size=14,
        reg_tokens=2,
        init_values=0.1,
        qkv_bias=False,
        **small,
    )
    bv = make_timm(
        "timm_gap_big_vision",
        "vit_tiny_patch16_224",
        3,
        img_size=32,
        patch_size=8,
        class_token=False,
        no_embed_class=True,
        global_pool="avg",
        fc_norm=False,
        **small,
    )
    make_npz("npz_vision_transformer", vit, "timm_vit", big_vision=False, scanned=False)
    make_npz("npz_big_vision", bv, "timm_gap_big_vision", big_vision=True, scanned=False)
    make_npz("npz_big_vision_scanned", bv, "timm_gap_big_vision", big_vision=True, scanned=True)

    hf = dict(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        attn_implementation="eager",
    )
    vit_config = transformers.ViTConfig(image_size=32, patch_size=8, num_labels=5, **hf)
    vit_size = {"height": 32, "width": 32}
    make_hf(
        "hf_vit_classifier",
        transformers.ViTForImageClassification,
        vit_config,
        "ViT",
        4,
        size=vit_size,
    )
    make_hf("hf_vit_model", transformers.ViTModel, vit_config, "ViT", 5, size=vit_size)
    make_hf(
        "hf_deit_distilled",
        transformers.DeiTForImageClassificationWithTeacher,
        transformers.DeiTConfig(image_size=64, patch_size=16, num_labels=5, **hf),
        "DeiT",
        6,
        size={"height": 73, "width": 73},
        crop_size={"height": 64, "width": 64},
    )
    make_towers()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT}: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
