"""Shared defaults of every experiment, and the `smoke` variant.

Every field is documented here; the per-experiment files only set what differs. Defaults that
the paper does not state (model size, optimizer, epochs, CutMix parameters) are guesses taken
from the small-dataset ViT recipe of Lee et al. 2021, and say so.

Variants, chosen with the config argument (`--config=configs/X.py:smoke`):
  smoke: a tiny ViT (width 64, depth 3) and 300 steps; about 2 minutes on 2 laptop CPU cores.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from vit_locality.augment import protocol as protocol_lib
from vit_locality.augment import registry
from vit_locality.datasets import DATASETS

_BOOLEANS = {
    "": True,
    "1": True,
    "true": True,
    "yes": True,
    "0": False,
    "false": False,
    "no": False,
}


def parse_arg(arg: str | None, **defaults: object) -> ml_collections.ConfigDict:
    """`"smoke,seed=3"` -> ConfigDict(smoke=True, seed=3) on top of `defaults`; the type of each
    value follows its default (bool fields accept 1/0/true/false/yes/no, a bare name means True).
    Raises ValueError naming the allowed arguments or values."""
    parsed = ml_collections.ConfigDict(dict(defaults))
    for item in filter(None, (arg or "").split(",")):
        key, eq, value = item.partition("=")
        if key not in defaults:
            raise ValueError(f"config argument {key!r} unknown; allowed: {', '.join(defaults)}")
        default = defaults[key]
        if isinstance(default, bool):
            if value.lower() not in _BOOLEANS:
                raise ValueError(f"config argument {item!r} is not allowed: {key}=1 or {key}=0")
            parsed[key] = not eq or _BOOLEANS[value.lower()]
        else:
            try:
                parsed[key] = type(default)(value)
            except ValueError:
                kind = type(default).__name__
                raise ValueError(
                    f"config argument {item!r} is not allowed: {key}=<{kind}>"
                ) from None
    return parsed


def get_config(
    dataset: str = "cifar10", protocol: str = "baseline", arg: str | None = None
) -> ml_collections.ConfigDict:
    """The full config of `dataset` under `protocol`, with the variant in `arg` applied."""
    args = parse_arg(arg, smoke=False)
    config = ml_collections.ConfigDict()
    config.dataset = dataset  # cifar10 | cifar100 | fashion_mnist | tiny_imagenet
    config.protocol = protocol  # a label for reports; the fields below define the protocol

    config.data = ml_collections.ConfigDict()
    config.data.source = "tfds"  # tfds | files (the official files in data.dir, offline)
    config.data.dir = ""  # files: the dataset's official files; tfds: its data_dir (optional)
    # Keep the decoded train set on the accelerator and augment it there (crop, flip, AutoAugment,
    # ColorJitter: every protocol; no TensorFlow in the loop). For small datasets when the host
    # cannot keep up.
    config.data.on_device = False

    config.seed = 0

    # Model: the ViT of Lee et al. 2021 for 32 px (a guess; the paper does not state it).
    # Sizes that scale with the image: patch 4 and padding 4 at 32 px (28 px too), 8 at 64 px,
    # so the token grid stays 8x8 and the padding keeps its share of the image.
    scale = max(1, DATASETS[dataset].image_size // 32)

    config.model = ml_collections.ConfigDict()
    config.model.patch_size = 4 * scale
    config.model.width = 192
    config.model.depth = 9
    config.model.num_heads = 12
    config.model.mlp_dim = 384
    config.model.pool = "cls"  # cls | gap
    config.model.dtype = "float32"  # float32 | bfloat16 (compute; params stay float32)

    # Optimization: AdamW, warmup + cosine, grad-norm clip (guesses, as above).
    config.batch_size = 128  # global, over all devices and hosts
    config.total_epochs = 100.0
    config.total_steps = config_dict.placeholder(int)  # when set, overrides total_epochs
    config.lr = 1e-3
    config.wd = 0.05
    config.warmup_epochs = 10.0
    # The learning rate after a linear warmup from 0 to `lr` over `warmup_epochs`:
    #   cosine: cosine decay from `lr` to 0 at the run's last step (total_steps / total_epochs);
    #   constant: `lr` to the end (for probes whose runs stop long before a cosine would anneal,
    #     e.g. configs/sweeps/cpu_scale.py). Runs saved before this field resume as cosine.
    config.schedule = "cosine"
    config.grad_clip_norm = 1.0

    # The protocol: every component's fields, set to their defaults (off; crop and flip on).
    # Each component's module documents its fields (vit_locality/augment/<name>.py):
    #   crop_flip        aug.crop_padding (pixels per side), aug.flip
    #   autoaugment      aug.autoaugment (CIFAR-10 policy, torchvision semantics)
    #   color_jitter     aug.color_jitter (strength; 0 = off)
    #   erasing          aug.random_erasing (probability per image), aug.random_erasing_mode
    #   label_smoothing  label_smoothing (eps)
    #   mixing           mix.cutmix_alpha, mix.mixup_alpha, mix.prob (0 = no mixing),
    #                    mix.switch_prob
    # The CutMix defaults of the Modern protocol (alpha 1, every batch) are torchvision v2's.
    registry.add_fields(config)
    config.aug.crop_padding = 4 * scale  # zero padding before the random crop, pixels per side

    # Bookkeeping.
    config.log_every_steps = 50
    config.eval_every_steps = config_dict.placeholder(int)  # accuracy; default: once per epoch
    config.ckpt_every_steps = 1000
    config.kept_checkpoints = 3

    # Locality analysis (MAD, entropy) of the first `num_images` test images.
    config.analysis = ml_collections.ConfigDict()
    config.analysis.num_images = 1000
    config.analysis.every_epochs = 10.0

    # What the loop evaluates on the test split, as big_vision configures it: `evals.<name>` holds
    # the options of vit_locality/evaluators/<type>.py (`type` defaults to the name); each runs
    # at its period and at the final step. Delete an entry to skip it. The options below are
    # references: `eval_every_steps` and `analysis.*` are the same fields under short names.
    config.evals = ml_collections.ConfigDict()
    config.evals.classification = dict(
        every_steps=config.get_ref("eval_every_steps"),
        every_epochs=config_dict.placeholder(float),
    )
    config.evals.locality = dict(
        num_images=config.analysis.get_ref("num_images"),
        every_steps=config_dict.placeholder(int),  # when set, instead of every_epochs
        every_epochs=config.analysis.get_ref("every_epochs"),
    )

    if args.smoke:
        config.model.width = 64
        config.model.depth = 3
        config.model.num_heads = 4
        config.model.mlp_dim = 128
        config.batch_size = 64
        config.total_steps = 300
        config.warmup_epochs = 1.0
        config.log_every_steps = 20
        config.eval_every_steps = 100
        config.ckpt_every_steps = 100
        config.analysis.num_images = 128
        config.analysis.every_epochs = 2.0
    return config


def experiment(dataset: str, protocol: str, arg: str | None) -> ml_collections.ConfigDict:
    """The config of one paper experiment: `dataset` under `protocol`, variant `arg`."""
    return protocol_lib.set_protocol(get_config(dataset, protocol, arg), protocol)
