"""The protocol as a registry of components.

1. Every config of the paper's sweep (its 12 runs, the ablation's arguments among them) and of
   the controls sweep gives the first batches (pixels and labels, tf.data and on the device) and
   the step's protocol ops (images, targets, lam) that the code before the registry gave, bit
   for bit, and each of the paper's 12 the losses of its first 3 steps too (up to float32's
   reassociation of the step's sums on another CPU; a control differs from them only in the
   step's ops, compared directly; one train-step compilation each would cost the suite
   minutes): tests/fixtures/protocol_digests.json was written by that code (commit 3f18f3a's
   API) on the same synthetic images, with a small ViT, on 8 devices.
2. A component defined in this file alone, with no other file touched, is validated, trains (on
   the device input), and is named in the report.
"""

import functools
import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from vit_locality import rng, step, sweep, train_state
from vit_locality.augment import protocol, registry
from vit_locality.datasets import DATASETS
from vit_locality.errors import ConfigError
from vit_locality.models import build_model
from vit_locality.parallel import sharding
from vit_locality.plan import StepPlan
from vit_locality.predict import Predictor, normalize
from vit_locality.validation import validate_config

from .conftest import REPO_ROOT

GOLDEN = json.loads((REPO_ROOT / "tests" / "fixtures" / "protocol_digests.json").read_text())
SMALL = {"model.width": "16", "model.depth": "1", "model.num_heads": "2", "model.mlp_dim": "32",
         "batch_size": "16", "warmup_epochs": "0"}  # fmt: skip
STEPS = 3


def sha(*arrays) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def synthetic(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    info = DATASETS[dataset]
    generator = np.random.default_rng(0)
    shape = (64, info.image_size, info.image_size, info.channels)
    return (
        generator.integers(0, 256, shape, dtype=np.uint8),
        generator.integers(0, info.num_classes, (64,), dtype=np.int32),
    )


def sweep_configs() -> dict[str, object]:
    configs = {}
    for name in ("paper", "controls"):
        entries, _ = sweep.load_sweep(REPO_ROOT / "configs" / "sweeps" / f"{name}.py")
        for run in sweep.expand(entries, 1, global_overrides=SMALL):
            configs[f"{name}/{run.name}"] = sweep.resolve_config(run)
    return configs


CONFIGS = sweep_configs()


def test_every_run_of_both_sweeps_before_the_registry_has_a_digest():
    """The controls sweep has grown since (RandAugment, TrivialAugmentWide, ResizeMix)."""
    assert len(GOLDEN) == 22 and set(GOLDEN) <= set(CONFIGS)


@functools.cache
def batch_digests(dataset: str, aug: str, seed: int) -> tuple[str, str, list]:
    """(host digest, device digest, host batches) of a dataset under `aug` (config.aug as JSON):
    configs that differ only in the step share them, and one compilation."""
    from vit_locality.data.augment import make_train_augment
    from vit_locality.data.device_input import device_train_batches
    from vit_locality.data.train_input import train_batches

    config = common.get_config(dataset)
    config.aug.update(json.loads(aug))
    images, labels = synthetic(dataset)
    order = dict(global_batch_size=16, start_step=0, seed=seed)
    host = list(
        train_batches(
            images, labels, augment=make_train_augment(config), total_steps=STEPS, **order
        )
    )
    on_device = [
        jax.device_get(batch)
        for batch in device_train_batches(
            images, labels, mesh=sharding.make_mesh(), total_steps=2,
            ops=registry.device_image_ops(config), **order,
        )
    ]  # fmt: skip
    return (
        sha(*[a for b in host[:2] for a in (b["image"], b["label"])]),
        sha(*[a for b in on_device for a in (b["image"], b["label"])]),
        host,
    )


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_the_registry_keeps_today_s_batches_step_ops_and_the_paper_s_losses(name):
    config = CONFIGS[name]
    mesh = sharding.make_mesh()
    aug = json.dumps(config.aug.to_dict(), sort_keys=True)
    host_digest, device_digest, host = batch_digests(config.dataset, aug, config.seed)

    model = build_model(config)
    predictor = Predictor.for_dataset(model, config.dataset)
    key = rng.step_key(config.seed, 0)
    x = normalize(jnp.asarray(host[0]["image"]), predictor.mean, predictor.std)
    t = jax.nn.one_hot(jnp.asarray(host[0]["label"]), model.num_classes, dtype=jnp.float32)
    info = {}
    for stream, op in registry.step_ops(config, mesh.size):
        x, t, extra = op(jax.random.fold_in(key, stream), x, t)
        info.update(extra)

    expected = dict(GOLDEN[name])
    assert {
        "host": host_digest,
        "device": device_digest,
        "step": sha(np.asarray(x), np.asarray(t), np.asarray(info.get("lam", np.float32(1.0)))),
    } == {key: expected.pop(key) for key in ("host", "device", "step")}
    if not name.startswith("paper/"):
        return
    plan = StepPlan.from_config(config, 64)
    schedule, tx = train_state.optimizer(config, plan)
    state = train_state.init_state(config, model, tx, mesh)
    train_step = step.jit_train_step(config, predictor, schedule, mesh)
    losses = []
    for batch in host:
        state, metrics = train_step(state, sharding.to_global(batch, sharding.batch_sharded(mesh)))
        losses.append(float(jax.device_get(metrics["loss"])))
    # The losses come from float32 sums (matmuls, the 8 devices' gradient all-reduce) that
    # XLA:CPU associates by the CPU's vector width: on another CPU than the digests' they
    # differ by a few ulps (1 ulp of 5.3 at the second step on a fresh machine). 1e-5 is about
    # 80 float32 ulps, while any change of the protocol moves the loss by far more.
    np.testing.assert_allclose(losses, [float.fromhex(h) for h in expected["losses"]], rtol=1e-5)


# ---------------------------------------------------------------- a component defined here alone


def _check_inversion(config, context):
    if not 0 <= config.aug.invert_prob <= 1:
        raise ConfigError(
            f"config.aug.invert_prob={config.aug.invert_prob!r} is not allowed: a number in [0, 1]"
        )


def _invert_on_device(config):
    prob = config.aug.invert_prob
    return lambda key, image: jnp.where(jax.random.uniform(key) < prob, 255 - image, image)


def _invert_in_tf(config):
    import tensorflow as tf

    prob = config.aug.invert_prob
    return lambda image, seed: tf.where(tf.random.stateless_uniform([], seed) < prob,
                                        255 - image, image)  # fmt: skip


INVERSION = registry.Component(
    name="inversion",
    stage="image",
    fields={"aug.invert_prob": 0.0},
    on_fields=("aug.invert_prob",),
    stream=7,
    key="inv",
    title="Inversion",
    switch={"aug.invert_prob": 0.5},
    settings={"p": "aug.invert_prob"},
    check=_check_inversion,
    tf_form=_invert_in_tf,
    device_form=_invert_on_device,
)


@pytest.fixture
def inversion():
    with registry.registered(INVERSION) as component:
        yield component


def test_a_component_defined_in_a_test_is_a_config_field_with_its_checks(inversion):
    config = common.get_config("cifar10")
    assert config.aug.invert_prob == 0.0  # its field, off, in every config
    config.aug.invert_prob = 1.5
    with pytest.raises(ConfigError, match=r"^config.aug.invert_prob=1.5 is not allowed"):
        validate_config(config, 1)
    protocol.switch_on(config, "inv")
    validate_config(config, 1)
    assert protocol.condition_name(protocol.components_of(config), "cifar10") == "inv"
    protocol.switch_on(config, "cm")
    config.aug.invert_prob = 0.25
    found = protocol.components_of(config.to_dict())  # as the report reads config.json
    assert protocol.condition_name(found, "cifar10") == "cm+inv(p=0.25)"


def test_without_it_configs_do_not_have_its_field():
    assert "invert_prob" not in common.get_config("cifar10").aug


def test_a_component_defined_in_a_test_trains_on_the_device_and_is_reported(inversion, tmp_path):
    from vit_locality.report import write_report
    from vit_locality.train import train_and_evaluate

    from .conftest import CIFAR10_SAMPLE

    if not (CIFAR10_SAMPLE / "data_batch_1.bin").is_file():
        pytest.skip("real data absent")
    config = common.get_config("cifar10", "baseline", "smoke")
    config.data.source, config.data.dir, config.data.on_device = "files", str(CIFAR10_SAMPLE), True
    config.total_steps, config.warmup_epochs, config.batch_size = 4, 0.0, 16
    config.eval_every_steps = config.ckpt_every_steps = 4
    config.analysis.num_images = 16
    protocol.switch_on(config, "inv")
    result = train_and_evaluate(config, str(tmp_path / "run"))
    assert result["step"] == 4
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["aug"]["invert_prob"] == 0.5
    report = write_report([tmp_path / "run"], tmp_path / "report").read_text()
    assert "| inv |" in report
