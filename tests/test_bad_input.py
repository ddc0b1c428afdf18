"""The bad-input catalogue of the README ("Bad input and what you see"), as real processes: each
case exits with status 2, prints the catalogue's one line, and leaves the workdir as it was.

Rows covered elsewhere: a corrupt checkpoint and an unwritable workdir (test_faults.py), `analyze`
and `report` on a directory with no run (test_analyze_cli.py, test_report.py)."""

import json
import shutil

import pytest

from .conftest import CIFAR10_SAMPLE
from .test_faults import last_line, snapshot
from .test_train_e2e import run

pytestmark = pytest.mark.skipif(
    not (CIFAR10_SAMPLE / "test_batch.bin").exists(), reason="real CIFAR-10 sample absent"
)

# (flags on top of test_train_e2e.TINY, the line after "error: ")
CONFIG_CASES = [
    (
        ["--config.dataset=imagenet"],
        "config.dataset='imagenet' is not allowed: one of 'cifar10', 'cifar100', "
        "'fashion_mnist', 'tiny_imagenet'",
    ),
    (
        ["--config.model.patch_size=5"],
        "config.model.patch_size=5 is not allowed: a divisor of cifar10's image size 32",
    ),
    (
        ["--config.model.width=33"],
        "config.model.width=33 is not allowed: a multiple of model.num_heads=2",
    ),
    (["--config.lr=0.0"], "config.lr=0.0 is not allowed: a positive number"),
    (["--config.batch_size=0"], "config.batch_size=0 is not allowed: a positive integer"),
    (["--config.total_steps=0"], "config.total_steps=0 is not allowed: a positive integer"),
    (
        ["--config.batch_size=60"],
        "config.batch_size=60 is not allowed: a multiple of the device count 8",
    ),
    (
        ["--config.label_smoothing=1.0"],
        "config.label_smoothing=1.0 is not allowed: a number in [0.0, 1.0)",
    ),
    (["--config.mix.prob=1.5"], "config.mix.prob=1.5 is not allowed: a number in [0.0, 1.0]"),
    (
        ["--config.mix.cutmix_alpha=-1.0"],
        "config.mix.cutmix_alpha=-1.0 is not allowed: a number in [0.0, inf)",
    ),
    (
        ["--config.mix.cutmix_alpha=0.0"],
        "config.mix.prob=1.0 is not allowed: 0 when mix.cutmix_alpha and mix.mixup_alpha are 0",
    ),
    (
        ["--config.dataset=tiny_imagenet", "--config.aug.autoaugment=True"],
        "config.aug.autoaugment=True is not allowed: False for tiny_imagenet (no AutoAugment "
        "policy; use aug.color_jitter)",
    ),
]


@pytest.mark.parametrize("flags,message", CONFIG_CASES, ids=lambda c: str(c)[:40])
def test_bad_config_value(tmp_path, flags, message):
    workdir = tmp_path / "run"
    assert last_line(run(workdir, *flags)) == f"error: {message}"
    assert not workdir.exists()


def test_missing_files_directory(tmp_path):
    workdir, nowhere = tmp_path / "run", tmp_path / "nowhere"
    assert last_line(run(workdir, f"--config.data.dir={nowhere}")) == (
        f"error: data.dir: {nowhere}/data_batch_1.bin is missing; the directory must hold "
        "data_batch_1.bin .. data_batch_5.bin and test_batch.bin (cifar-10-batches-bin)"
    )
    assert not workdir.exists()


def test_truncated_records(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(CIFAR10_SAMPLE, data)
    (data / "data_batch_1.bin").write_bytes(
        (CIFAR10_SAMPLE / "data_batch_1.bin").read_bytes()[:5000]
    )
    workdir = tmp_path / "run"
    assert last_line(run(workdir, f"--config.data.dir={data}")) == (
        f"error: data.dir: {data / 'data_batch_1.bin'} is truncated or corrupt: 5000 bytes is "
        "not a whole number of 3073-byte CIFAR records"
    )
    assert not workdir.exists()


def test_workdir_of_another_model(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    saved = {"dataset": "cifar10", "model": {"patch_size": 4, "width": 32, "depth": 3}}
    saved["model"].update(num_heads=2, mlp_dim=64, pool="cls")
    (workdir / "config.json").write_text(json.dumps(saved))
    before = snapshot(workdir)
    assert last_line(run(workdir)) == (
        f"error: config.model.depth=2 differs from 3 in {workdir}/config.json; resuming needs "
        "the same model and dataset: use another --workdir or the saved value"
    )
    assert snapshot(workdir) == before
