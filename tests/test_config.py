"""Configs load and validate; bad values get one line naming the field and what is allowed."""

import importlib
import pathlib

import pytest

from configs import common
from vit_locality.errors import ConfigError
from vit_locality.validation import check_resumable, validate_config
from vit_locality.workdir import default_workdir

CONFIG_FILES = sorted(
    p.stem
    for p in (pathlib.Path(__file__).parents[1] / "configs").glob("*.py")
    if p.stem not in ("__init__", "common")
)


@pytest.mark.parametrize("name", CONFIG_FILES)
@pytest.mark.parametrize("arg", [None, "smoke"])
def test_every_config_is_valid(name, arg):
    config = importlib.import_module(f"configs.{name}").get_config(arg)
    validate_config(config, num_devices=8 if arg is None else 1)
    dataset, protocol = name.rsplit("_", 1)
    assert config.dataset == dataset and config.protocol == protocol


def test_modern_differs_from_baseline_exactly_by_its_components():
    base = common.experiment("cifar100", "baseline", None)
    modern = common.experiment("cifar100", "modern", None)
    assert (base.aug.autoaugment, base.mix.prob, base.label_smoothing) == (False, 0.0, 0.0)
    assert modern.aug.autoaugment and modern.mix.cutmix_alpha == 1.0 and modern.mix.prob == 1.0
    assert modern.label_smoothing == 0.1
    assert modern.mix.mixup_alpha == 0.0 and modern.aug.color_jitter == 0.0
    tiny = common.experiment("tiny_imagenet", "modern", None)
    assert tiny.aug.color_jitter == 0.4 and not tiny.aug.autoaugment


BAD_VALUES = [
    ("dataset", "imagenet", "config.dataset='imagenet' is not allowed: one of 'cifar10'"),
    ("model.patch_size", 5, "config.model.patch_size=5 is not allowed: a divisor of cifar10's"),
    ("model.width", 100, "config.model.width=100 is not allowed: a multiple of model.num_heads=12"),
    ("lr", 0.0, "config.lr=0.0 is not allowed: a positive finite number"),
    ("batch_size", -8, "config.batch_size=-8 is not allowed: a positive integer"),
    ("batch_size", 100, "config.batch_size=100 is not allowed: a multiple of the device count 8"),
    ("total_epochs", 0.0, "config.total_epochs=0.0 is not allowed: a positive finite number"),
    ("label_smoothing", 1.0, "config.label_smoothing=1.0 is not allowed: a number in [0.0, 1.0)"),
    ("mix.prob", 1.5, "config.mix.prob=1.5 is not allowed: a number in [0.0, 1.0]"),
    ("mix.cutmix_alpha", -1.0, "config.mix.cutmix_alpha=-1.0 is not allowed"),
    ("model.pool", "max", "config.model.pool='max' is not allowed: one of 'cls', 'gap'"),
    ("data.source", "web", "config.data.source='web' is not allowed: one of 'tfds', 'files'"),
    ("schedule", "linear", "config.schedule='linear' is not allowed: one of 'cosine', 'constant'"),
]


@pytest.mark.parametrize("field,value,message", BAD_VALUES)
def test_bad_value_names_the_field_and_what_is_allowed(field, value, message):
    config = common.experiment("cifar10", "baseline", None)
    parent, _, key = field.rpartition(".")
    (config[parent] if parent else config)[key] = value
    with pytest.raises(ConfigError) as e:
        validate_config(config, num_devices=8)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_mixing_probability_without_any_mixing_is_rejected():
    config = common.experiment("cifar10", "baseline", None)
    config.mix.prob = 0.5
    with pytest.raises(ConfigError, match=r"config.mix.prob=0.5 .* when mix.cutmix_alpha"):
        validate_config(config, num_devices=1)


def test_autoaugment_needs_a_policy():
    config = common.experiment("tiny_imagenet", "baseline", None)
    config.aug.autoaugment = True
    with pytest.raises(ConfigError, match=r"config.aug.autoaugment=True .* tiny_imagenet"):
        validate_config(config, num_devices=1)


def test_resuming_with_another_model_is_refused():
    saved = common.experiment("cifar10", "baseline", None).to_dict()
    config = common.experiment("cifar10", "baseline", None)
    config.model.depth = 6
    with pytest.raises(ConfigError, match=r"config.model.depth=6 differs from 9 in runs/x"):
        check_resumable(saved, config, "runs/x")


def test_resuming_under_another_protocol_or_schedule_is_refused_naming_every_field():
    saved = common.experiment("cifar10", "baseline", None).to_dict()
    config = common.experiment("cifar10", "modern", None)
    config.lr, config.seed, config.total_epochs = 3e-4, 1, 200.0
    with pytest.raises(ConfigError) as error:
        check_resumable(saved, config, "runs/x")
    named = [part.split("=")[0] for part in str(error.value).split(" in runs/x")[0].split(", ")]
    assert named == [
        "config.aug.autoaugment",
        "config.label_smoothing",
        "config.lr",
        "config.mix.cutmix_alpha",
        "config.mix.prob",
        "config.protocol",
        "config.seed",
        "config.total_epochs",
    ]


def test_resuming_with_other_bookkeeping_or_data_location_is_allowed():
    saved = common.experiment("cifar10", "modern", None).to_dict()
    del saved["aug"]["random_erasing"]  # a run from before the field existed
    config = common.experiment("cifar10", "modern", None)
    config.data.source, config.data.dir = "files", "/elsewhere/cifar-10-batches-bin"
    config.log_every_steps, config.eval_every_steps, config.ckpt_every_steps = 10, 100, 500
    config.kept_checkpoints, config.analysis.num_images, config.analysis.every_epochs = 1, 64, 1.0
    check_resumable(saved, config, "runs/x")


def test_a_run_saved_before_the_schedule_field_resumes_as_cosine_only():
    saved = common.experiment("cifar10", "baseline", None).to_dict()
    del saved["schedule"]  # trained with warmup + cosine, the only schedule then
    config = common.experiment("cifar10", "baseline", None)
    check_resumable(saved, config, "runs/x")
    config.schedule = "constant"
    with pytest.raises(ConfigError, match=r"^config.schedule='constant' differs from 'cosine'"):
        check_resumable(saved, config, "runs/x")


@pytest.mark.parametrize("batch_size,devices", [(8, 8), (24, 8), (3, 1)])
def test_mixing_needs_an_even_shard_of_at_least_two_images(batch_size, devices):
    config = common.experiment("cifar10", "modern", None)
    config.batch_size = batch_size
    with pytest.raises(ConfigError) as error:
        validate_config(config, num_devices=devices)
    assert str(error.value) == (
        f"config.batch_size={batch_size} is not allowed: with mixing on (mix.prob > 0), an even "
        f"number of at least 2 images per device: a multiple of {2 * devices} for the {devices} "
        "devices"
    )
    config.mix.prob = 0.0  # without mixing, any multiple of the device count
    validate_config(config, num_devices=devices)


def test_config_argument_parsing():
    assert common.parse_arg("smoke", smoke=False).smoke is True
    assert common.parse_arg(None, smoke=False).smoke is False
    assert common.parse_arg("smoke=0,seed=3", smoke=True, seed=0).to_dict() == {
        "smoke": False,
        "seed": 3,
    }
    with pytest.raises(ValueError, match="config argument 'fast' unknown; allowed: smoke$"):
        common.parse_arg("fast", smoke=False)
    with pytest.raises(ValueError, match="'smoke=2' is not allowed: smoke=1 or smoke=0$"):
        common.parse_arg("smoke=2", smoke=False)
    with pytest.raises(ValueError, match="'seed=x' is not allowed: seed=<int>$"):
        common.parse_arg("seed=x", seed=0)


def test_default_workdir():
    assert default_workdir("configs/cifar100_modern.py") == "runs/cifar100_modern"
    assert default_workdir("configs/cifar100_modern.py:smoke") == "runs/cifar100_modern_smoke"
