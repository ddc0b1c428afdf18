"""The bad-input catalogue of docs/reliability.md ("Bad input and what you see"), as real
processes: each case exits with status 2, prints the catalogue's one line, and leaves the workdir
as it was.

Mistakes in the flags and the config file (FLAG_CASES) are caught while the command line is
parsed: stderr holds the one line and nothing else, for main, analyze, sweep and report. Each
entry point is run as a real process once or twice (SUBPROCESS); the other cases go through the
same parsing in this process (`cli.config_args` and `cli.load_config`, what `cli.parse_flags`
runs for main; analyze's `parse_flags` and `main`). A config value that is not allowed
(CONFIG_CASES) is refused by `validate_config` with the 8 devices of a run here; one such case
as a real process: test_train_e2e.py's test_bad_config_exits_2_with_one_line_and_no_workdir.

Rows covered elsewhere: a corrupt checkpoint and an unwritable workdir (test_faults.py), `analyze`
and `report` on a directory with no run (test_analyze_cli.py, test_report.py), the `tfds` source
offline (test_data.py), another library's checkpoint cut short or damaged
(test_analyze_checkpoint.py)."""

import json
import shutil
import subprocess
import sys

import pytest

from vit_locality import cli
from vit_locality.errors import UserError
from vit_locality.validation import validate_config

from .conftest import CIFAR10_SAMPLE, REPO_ROOT, analyze_main
from .helpers import TINY, last_line, run, snapshot

pytestmark = pytest.mark.skipif(
    not (CIFAR10_SAMPLE / "test_batch.bin").exists(), reason="real CIFAR-10 sample absent"
)

# (flags on top of helpers.TINY, the line after "error: ")
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
    (["--config.lr=0.0"], "config.lr=0.0 is not allowed: a positive finite number"),
    (["--config.lr=nan"], "config.lr=nan is not allowed: a positive finite number"),
    (
        ["--config.grad_clip_norm=inf"],
        "config.grad_clip_norm=inf is not allowed: a positive finite number",
    ),
    (["--config.wd=inf"], "config.wd=inf is not allowed: a number in [0.0, inf)"),
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
        ["--config.batch_size=8"],
        "config.batch_size=8 is not allowed: with mixing on (mix.prob > 0), an even number of at "
        "least 2 images per device: a multiple of 16 for the 8 devices",
    ),
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
def test_bad_config_value(flags, message):
    """The config of TINY + `flags` as main resolves it, checked as a run on 8 devices does
    before it touches the workdir."""
    spec, overrides = cli.config_args([*TINY, *flags])
    with pytest.raises(UserError) as error:
        validate_config(cli.load_config(spec, overrides), num_devices=8)
    assert str(error.value) == message


def test_missing_files_directory(tmp_path):
    workdir, nowhere = tmp_path / "run", tmp_path / "nowhere"
    result = run(workdir, f"--config.data.dir={nowhere}")
    assert last_line(result) == (
        f"error: data.dir: {nowhere}/data_batch_1.bin is missing; the directory must hold "
        "data_batch_1.bin .. data_batch_5.bin and test_batch.bin (cifar-10-batches-bin)"
    )
    assert "test_batch.bin" not in result.stdout
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
        f"error: config.model.depth=2 differs from 3 in {workdir}/config.json; a run resumes "
        "with the same config apart from data.source, data.dir, log_every_steps, "
        "eval_every_steps, ckpt_every_steps, kept_checkpoints, evals, analysis.num_images, "
        "analysis.every_epochs: use another --workdir or the saved values"
    )
    assert snapshot(workdir) == before


SMOKE = "--config=configs/cifar10_baseline.py:smoke"
CONFIGS = ", ".join(
    f"configs/{name}.py"
    for name in (
        "cifar100_ablation",
        "cifar100_baseline",
        "cifar100_modern",
        "cifar10_baseline",
        "cifar10_modern",
        "fashion_mnist_baseline",
        "fashion_mnist_modern",
        "tiny_imagenet_baseline",
        "tiny_imagenet_modern",
    )
)
# (module, its arguments, the line after "error: "); W is a workdir that must stay absent.
FLAG_CASES = [
    (
        "main",
        [SMOKE, "--config.lrr=0.1"],
        "config.lrr is not a field of configs/cifar10_baseline.py; closest: config.lr",
    ),
    (
        "main",
        [SMOKE, "--config.model.widht=64"],
        "config.model.widht is not a field of configs/cifar10_baseline.py; closest: "
        "config.model.width, config.model.dtype, config.model.depth",
    ),
    (
        "main",
        ["--config=configs/cifar10_modrn.py"],
        f"--config=configs/cifar10_modrn.py: no config file configs/cifar10_modrn.py; "
        f"configs: {CONFIGS}",
    ),
    ("main", [], f"--config is required: one of {CONFIGS} (with :ARG for a variant)"),
    (
        "main",
        ["--config=configs/cifar10_baseline.py:smok"],
        "--config=configs/cifar10_baseline.py:smok: config argument 'smok' unknown; allowed: smoke",
    ),
    (
        "main",
        ["--config=configs/cifar100_ablation.py:cutmix=2"],
        "--config=configs/cifar100_ablation.py:cutmix=2: config argument 'cutmix=2' is not "
        "allowed: cutmix=1 or cutmix=0",
    ),
    (
        "main",
        [SMOKE, "--config.batch_size=1.5"],
        "config.batch_size='1.5' is not allowed: an integer",
    ),
    (
        "main",
        [SMOKE, "--config.aug.flip=maybe"],
        "config.aug.flip='maybe' is not allowed: True or False",
    ),
    (
        "main",
        [SMOKE, "--config.model=small"],
        "config.model='small' is not allowed: one field at a time, e.g. --config.model.FIELD=VALUE",
    ),
    (
        "main",
        [SMOKE, "--workdirr=W"],
        "Unknown command line flag 'workdirr'. Did you mean: workdir ?",
    ),
    ("analyze", ["--workdir=W", "--step=last"], "--step='last' is not allowed: an integer"),
    ("analyze", [], "--workdir is required"),
    (
        "sweep",
        ["configs/sweeps/paper.py", "--root=W", "--config.lrr=0.1"],
        "run cifar10_baseline_seed0: config.lrr is not a field of configs/cifar10_baseline.py; "
        "closest: config.lr",
    ),
    ("report", ["W"], "the following arguments are required: --out"),
]


# The cases run as real processes: every entry point, and main's two that need its flags defined
# (the rest of main's are its config's, parsed before absl's flags).
SUBPROCESS = {3, 9, 11, 12, 13}


def in_process(module, args, capfd) -> tuple[int, str]:
    """(exit status, stderr) of the command line parsed as `module` parses it, in this process."""
    capfd.readouterr()
    if module == "main":
        try:
            cli.load_config(*cli.config_args(args))
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2, capfd.readouterr().err
        return 0, capfd.readouterr().err
    assert module == "analyze"
    code = analyze_main(*args)
    return code, capfd.readouterr().err


@pytest.mark.parametrize(
    "case", range(len(FLAG_CASES)), ids=lambda i: f"{i}-" + str(FLAG_CASES[i])[:40]
)
def test_bad_command_line(tmp_path, case, capfd):
    module, args, message = FLAG_CASES[case]
    workdir = tmp_path / "W"
    args = [arg.replace("=W", f"={workdir}") if arg != "W" else str(workdir) for arg in args]
    if module == "main":
        args.append(f"--workdir={workdir}")
    if case in SUBPROCESS:
        result = subprocess.run(
            [sys.executable, "-m", f"vit_locality.{module}", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
        assert (result.returncode, result.stderr) == (2, f"error: {message}\n")
    else:
        assert in_process(module, args, capfd) == (2, f"error: {message}\n")
    assert not workdir.exists()


def test_every_entry_point_is_tried_as_a_real_process():
    assert {FLAG_CASES[i][0] for i in SUBPROCESS} == {"main", "analyze", "sweep", "report"}
    assert {FLAG_CASES[i][2] for i in SUBPROCESS} >= {
        f"--config is required: one of {CONFIGS} (with :ARG for a variant)",
        "Unknown command line flag 'workdirr'. Did you mean: workdir ?",
    }
