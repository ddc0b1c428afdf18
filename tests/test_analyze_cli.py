"""`python -m vit_locality.analyze` on a real smoke run's checkpoint: restored onto another device
count, it writes locality.json in docs/locality.md's schema and the plots; a directory without a
run or a step that was not saved is one `error:` line, exit 2, and changes nothing; the same run
read by `analyze --checkpoint` on PNGs of its test images, or on its test split, gives the same
numbers."""

import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from PIL import Image

from vit_locality.analysis.locality import DEFINITIONS
from vit_locality.analyze import analyze_run
from vit_locality.data.sources import load_split
from vit_locality.errors import UserError
from vit_locality.external.analyze import analyze_checkpoint

from .conftest import CIFAR10_SAMPLE, LOCALITY_JSON_KEYS, REPO_ROOT

pytestmark = pytest.mark.skipif(
    not (CIFAR10_SAMPLE / "test_batch.bin").exists(), reason="real CIFAR-10 sample absent"
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ("mad_per_head", "entropy_per_head", "attention_maps", "training_curves")


def python(module, *args, devices, timeout=300):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A 2-step run of a tiny ViT on one device; its last checkpoint is step 2."""
    workdir = tmp_path_factory.mktemp("runs") / "smoke"
    result = python(
        "vit_locality.main",
        "--config=configs/cifar10_baseline.py:smoke",
        "--config.data.source=files",
        f"--config.data.dir={CIFAR10_SAMPLE}",
        "--config.model.width=16",
        "--config.model.depth=2",
        "--config.model.num_heads=2",
        "--config.model.mlp_dim=32",
        "--config.batch_size=16",
        "--config.total_steps=2",
        "--config.warmup_epochs=0",
        "--config.data.on_device=True",  # no TensorFlow to import for 2 steps
        f"--workdir={workdir}",
        devices=1,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def snapshot(directory):
    return sorted((p.relative_to(directory), p.stat().st_mtime_ns) for p in directory.rglob("*"))


def test_analyze_writes_locality_json_and_plots(smoke_run):
    for name in ("locality.json", *(f"plots/{p}.png" for p in PLOTS)):
        (smoke_run / name).unlink(missing_ok=True)  # whatever training wrote: analyze must write
    result = python("vit_locality.analyze", f"--workdir={smoke_run}", "--num_images=40", devices=2)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((smoke_run / "locality.json").read_text())
    assert list(record) == LOCALITY_JSON_KEYS
    assert (record["step"], record["dataset"], record["num_images"]) == (2, "cifar10", 40)
    assert (record["image_size"], record["patch_size"], record["grid"]) == (32, 4, [8, 8])
    assert record["num_prefix_tokens"] == 1 and record["definitions"] == DEFINITIONS
    assert sorted(record["per_head"]) == sorted(DEFINITIONS)
    for value in record["per_head"].values():
        assert len(value) == 2 and all(len(row) == 2 for row in value)
    mad = record["per_head"]["mad"]
    assert 0.0 < record["summary"]["min_mad_first_layer"] == min(mad[0]) < 0.6
    for plot in PLOTS:
        assert (smoke_run / "plots" / f"{plot}.png").read_bytes()[:8] == PNG_SIGNATURE, plot
    lines = result.stdout.splitlines()
    assert lines[0].startswith("locality at step 2: cifar10, 40 test images, 8x8 patches")
    assert [line.split()[0] for line in lines[3:5]] == ["1", "2"]  # layers from 1


def test_missing_step_is_a_user_error_that_changes_nothing(smoke_run):
    before = snapshot(smoke_run)
    with pytest.raises(UserError, match=r"--step=5 is not a saved checkpoint .*saved steps: 2"):
        analyze_run(smoke_run, step=5)
    assert snapshot(smoke_run) == before


def test_directory_without_a_run_exits_2_with_one_line(tmp_path):
    result = python("vit_locality.analyze", f"--workdir={tmp_path}", devices=1)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path} holds no run (no config.json); --workdir must be a directory "
        "written by python -m vit_locality.main"
    ]
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_of_a_run_on_its_own_test_images_equals_the_workdir_analysis(
    smoke_run, tmp_path
):
    """`analyze --checkpoint=RUN --images=DIR` (format `project`) on PNGs of the run's first test
    images gives the locality.json numbers `analyze --workdir=RUN` gives on the test split: the
    same parameters, pixels and normalisation (float32 sums in other batches: 1e-5)."""
    config = ml_collections.ConfigDict(json.loads((smoke_run / "config.json").read_text()))
    images, _ = load_split(config, "test")
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(images[:12]):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    workdir_record = analyze_run(smoke_run, num_images=12)
    record = analyze_checkpoint(smoke_run, folder, tmp_path / "out", batch_size=8)
    split_record = analyze_checkpoint(
        smoke_run, None, tmp_path / "split", dataset="cifar10", data_dir=str(CIFAR10_SAMPLE),
        num_images=12, batch_size=8,
    )  # fmt: skip
    assert (record["grid"], record["num_prefix_tokens"], record["num_images"]) == ([8, 8], 1, 12)
    assert record["step"] == workdir_record["step"] == 2
    assert split_record["dataset"] == "cifar10 test split"
    for name in DEFINITIONS:
        for got in (record, split_record):
            np.testing.assert_allclose(
                got["per_head"][name], workdir_record["per_head"][name], rtol=1e-5, atol=1e-7
            )
    assert (tmp_path / "out" / "plots" / "rollout.png").read_bytes()[:8] == PNG_SIGNATURE
