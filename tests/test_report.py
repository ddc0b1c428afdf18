"""The report on hand-made run directories with known numbers (config.json from the real configs,
metrics.jsonl rows, locality.json in docs/locality.md's schema)."""

import json
import subprocess
import sys

import pytest

from configs import (
    cifar10_baseline,
    cifar100_ablation,
    cifar100_baseline,
    cifar100_modern,
    tiny_imagenet_modern,
)
from vit_locality.augment import protocol
from vit_locality.report.conditions import cutmix_pairs, group_runs, load_runs

from .conftest import REPO_ROOT
from .helpers import make_run, write_curve


@pytest.fixture(scope="module")
def sweep_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    mad = [[0.30, 0.46], [0.40, 0.50], [0.50, 0.50]]  # [L=3][H=2]
    make_run(root, "c100_base_s0", cifar100_baseline.get_config(), 40.0, mad)
    mad_s1 = [[0.32, 0.40], [0.40, 0.50], [0.50, 0.50]]
    make_run(root, "c100_base_s1", cifar100_baseline.get_config(), 42.0, mad_s1, seed=1)
    make_run(root, "c100_modern", cifar100_modern.get_config(), 55.0, [[0.01, 0.2]] * 3)
    make_run(root, "c100_cm", cifar100_ablation.get_config("cutmix=1"), 50.0, [[0.03, 0.2]] * 3)
    make_run(root, "c100_aa", cifar100_ablation.get_config("autoaugment=1"), 45.0)  # no locality
    make_run(root, "c10_base", cifar10_baseline.get_config(), 70.0, [[0.25, 0.3]] * 3)
    (root / "report").mkdir()  # not a run: ignored
    return root


@pytest.fixture(scope="module")
def written(sweep_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = subprocess.run(
        [sys.executable, "-m", "vit_locality.report", str(sweep_root), f"--out={out}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return out, (out / "report.md").read_text()


def row(text, first_cell):
    """The markdown table row whose first cell is `first_cell`, as a list of cells."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


def section(text, heading):
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def test_baseline_vs_modern_with_seeds_aggregated_and_the_papers_numbers(written):
    _, text = written
    c100 = section(text, "## CIFAR-100")
    table = section(c100, "### Baseline vs Modern").split("### Ablation")[0]
    base = row(table, "baseline")
    assert base[1] == "2 (seed 0, 1)"
    assert base[2] == "41.00 ± 1.41"  # top-1: the final val/prec@1 of seeds 0 and 1
    assert base[3] == "0.310 ± 0.014"  # min MAD of layer 1: 0.30 and 0.32
    assert base[4] == "0.316"  # the paper's
    assert base[5] == "0.310 ± 0.014"  # first third of 3 layers = layer 1
    assert base[6] == "0.370 ± 0.014"  # mean over heads of layer 1: 0.38 and 0.36
    modern = row(table, "modern")
    assert modern[1:5] == ["1 (seed 0)", "55.00", "0.010", "0.008"]
    per_layer = row(table, "baseline MAD")
    assert per_layer[1:] == ["0.370", "0.450", "0.500"]
    assert row(table, "modern entropy")[1:] == ["0.210"] * 3


def test_ablation_table_has_components_bounds_and_accuracy_only_runs(written):
    _, text = written
    ablation = section(text, "### Ablation and other conditions")
    assert row(ablation, "condition")[:4] == ["condition", "AutoAugment", "CutMix", "Label sm."]
    assert row(ablation, "baseline")[1:4] == ["–", "–", "–"]
    assert row(ablation, "baseline")[-2:] == ["0.316 / ≥ 0.210", "✓"]
    aa = row(ablation, "aa")
    assert aa[1:4] == ["✓", "–", "–"] and "accuracy only" in aa[4]
    assert aa[6] == "– (no locality.json)" and aa[-2:] == ["≥ 0.210", "–"]
    cm = row(ablation, "cm")
    assert cm[1:4] == ["–", "✓", "–"] and cm[6] == "0.030"
    assert cm[-2:] == ["≤ 0.024", "✗"]  # 0.030 is above the paper's bound
    assert row(ablation, "modern")[1:4] == ["✓", "✓", "✓"]
    assert row(ablation, "modern")[-2:] == ["0.008 / ≤ 0.024", "✓"]
    order = [line.split("|")[1].strip() for line in ablation.splitlines() if line.startswith("|")]
    assert order[2:] == ["baseline", "aa", "cm", "modern"]  # the paper's order


def test_other_datasets_runs_table_and_figures(written):
    out, text = written
    c10 = section(text, "## CIFAR-10\n")
    assert row(c10, "baseline")[2:5] == ["70.00", "0.250", "–"]  # no published CIFAR-10 MAD
    assert row(text, "`c100_aa`")[-1] == "none (accuracy only)"
    assert row(text, "`c100_base_s1`")[2:5] == ["baseline", "1", "20"]
    for name in (
        "mad_per_head.png",
        "entropy_per_head.png",
        "min_mad_by_condition.png",
        "locality_during_training.png",
    ):
        assert f"]({name})" in text
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_condition_names_come_from_the_fields():
    def name(config):
        return protocol.condition_name(protocol.components_of(config.to_dict()), config.dataset)

    config = cifar100_ablation.get_config("cutmix=1,label_smoothing=1")
    assert name(config) == "cm+ls"
    config.mix.cutmix_alpha = 0.5
    config.aug.random_erasing = 0.25
    assert name(config) == "cm(a=0.5)+re(p=0.25)+ls"
    config = cifar100_baseline.get_config()
    config.mix.mixup_alpha, config.mix.prob = 0.8, 1.0
    assert name(config) == "mu"
    assert (
        name(cifar100_ablation.get_config("autoaugment=1,cutmix=1,label_smoothing=1")) == "modern"
    )
    assert name(tiny_imagenet_modern.get_config()) == "modern"  # cj+cm+ls there
    config = cifar100_baseline.get_config()  # a run from before random erasing existed
    del config.aug["random_erasing"]
    assert name(config) == "baseline"


def test_seeds_saved_before_and_after_evaluators_were_dicts_are_one_condition(tmp_path):
    """Two seeds of one condition, one from a config.json with the `evals` string (and the
    short names alone), one with today's `evals` dicts: one group, labelled by its condition."""
    old = cifar100_modern.get_config()
    make_run(tmp_path, "new_seed1", old, 40.0, seed=1)
    old_json = json.loads((tmp_path / "new_seed1" / "config.json").read_text())
    old_json["evals"], old_json["seed"] = "classification,locality", 0
    (tmp_path / "old_seed0").mkdir()
    (tmp_path / "old_seed0" / "config.json").write_text(json.dumps(old_json))
    metrics = (tmp_path / "new_seed1" / "metrics.jsonl").read_text()
    (tmp_path / "old_seed0" / "metrics.jsonl").write_text(metrics)
    changed = cifar100_modern.get_config()
    changed.analysis.num_images = 64
    make_run(tmp_path, "fewer_images_seed0", changed, 40.0)

    groups = group_runs(load_runs([tmp_path]))
    assert [(g.label, sorted(r.name for r in g.runs)) for g in groups] == [
        ("modern [evals.locality.num_images=64]", ["fewer_images_seed0"]),
        ("modern [evals.locality.num_images=1000]", ["new_seed1", "old_seed0"]),
    ]


def test_a_directory_without_runs_is_a_one_line_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "vit_locality.report", str(empty), f"--out={tmp_path / 'out'}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    message = f"error: {empty} holds no run: no config.json in it or in its subdirectories"
    assert result.stderr.strip() == message
    assert not (tmp_path / "out").exists()


def test_min_mad_at_every_step_with_the_gap_cutmix_opens(tmp_path):
    """Baseline (2 seeds) and +CutMix on CIFAR-10 with min MAD rows at steps 250, 500, 750; the
    table's values, gaps (Baseline mean minus CutMix) and top-1 are these rows' numbers."""
    root = tmp_path / "runs"
    cutmix = cifar10_baseline.get_config()
    cutmix.mix.cutmix_alpha, cutmix.mix.prob = 1.0, 1.0
    base0 = make_run(root, "baseline_seed0", cifar10_baseline.get_config(), 50.0)
    base1 = make_run(root, "baseline_seed1", cifar10_baseline.get_config(), 52.0, seed=1)
    cm = make_run(root, "cutmix_seed0", cutmix, 48.0)
    write_curve(base0, [(250, 0.47), (500, 0.46), (750, 0.45)], {500: 51.5})
    write_curve(base1, [(250, 0.49), (500, 0.44)], {500: 52.5})  # not at 750 yet
    # a resumed run wrote step 500 twice: the last row counts
    write_curve(cm, [(250, 0.465), (500, 0.43), (500, 0.42), (750, 0.40)], {500: 49.0})
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "vit_locality.report", str(root), f"--out={out}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    text = (out / "report.md").read_text()
    by_step = section(text, "## First-layer min MAD at every analysis step")
    assert "### CIFAR-10" in by_step
    header = next(line for line in by_step.splitlines() if line.startswith("| step"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "step",
        "baseline",
        "cm",
        "gap (baseline − cm)",
        "top-1 baseline (%)",
        "top-1 cm (%)",
    ]
    assert row(by_step, "250") == ["250", "0.480 ± 0.014", "0.465", "+0.015", "–", "–"]
    assert row(by_step, "500") == ["500", "0.450 ± 0.014", "0.420", "+0.030", "52.0 ± 0.7", "49.0"]
    assert row(by_step, "750") == ["750", "0.450", "0.400", "+0.050", "–", "–"]
    assert "](min_mad_steps.png)" in text
    assert (out / "min_mad_steps.png").read_bytes()[:4] == b"\x89PNG"
    runs = load_runs([root])
    assert [r.grid for r in runs] == [(8, 8)] * 3  # from the config: no locality.json
    assert runs[2].curve("locality/min_mad_first_layer") == {250: 0.465, 500: 0.42, 750: 0.40}


def test_cutmix_pairs_differ_only_in_cutmix_and_old_configs_count_as_cosine(tmp_path):
    configs = {
        "base": cifar100_baseline.get_config(),
        "cm": cifar100_ablation.get_config("cutmix=1"),
        "ls": cifar100_ablation.get_config("label_smoothing=1"),
        "cm+ls": cifar100_ablation.get_config("cutmix=1,label_smoothing=1"),
        "cm_constant": cifar100_ablation.get_config("cutmix=1"),
    }
    configs["cm_constant"].schedule = "constant"  # another schedule: no pair with base
    for name, config in configs.items():
        make_run(tmp_path, name, config, 40.0)
    old = json.loads((tmp_path / "base" / "config.json").read_text())
    del old["schedule"]  # a Baseline seed saved before the field: trained with cosine
    old["seed"] = 1
    make_run(tmp_path, "base_old", cifar100_baseline.get_config(), 41.0)
    (tmp_path / "base_old" / "config.json").write_text(json.dumps(old))
    groups = group_runs(load_runs([tmp_path]))
    labels = {g.label: sorted(r.name for r in g.runs) for g in groups}
    assert labels["baseline"] == ["base", "base_old"]
    assert [(a.label, b.label) for a, b in cutmix_pairs(groups)] == [
        ("baseline", "cm [schedule=cosine]"),
        ("ls", "cm+ls"),
    ]
