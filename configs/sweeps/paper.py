"""The paper's 12 runs: CIFAR-10, CIFAR-100 and Tiny-ImageNet under Baseline and Modern (6), and
the 6 other subsets of {AutoAugment, CutMix, label smoothing} on CIFAR-100 (Baseline and Modern
are the ablation's other 2 subsets).

    python -m vit_locality.sweep configs/sweeps/paper.py --root=runs/paper [--seeds=3]
    python -m vit_locality.report runs/paper --out=runs/paper/report

tfds downloads the datasets; `--config.data.dir=DIR` (a tfds data_dir) serves all of them. The
`files` source needs one directory per dataset: take the commands from `--print` and add
`--config.data.source=files --config.data.dir=...` to each.

The paper's result (first-layer minimum MAD on CIFAR-100): Baseline 0.316, Modern 0.008; every
ablation condition with CutMix <= 0.024, every one without >= 0.210.
"""

SEEDS = 1

DATASETS = ("cifar10", "cifar100", "tiny_imagenet")
# The ablation's subsets other than Baseline (none) and Modern (all): name -> config argument.
ABLATION = {
    "aa": "autoaugment=1",
    "cm": "cutmix=1",
    "ls": "label_smoothing=1",
    "aa+cm": "autoaugment=1,cutmix=1",
    "aa+ls": "autoaugment=1,label_smoothing=1",
    "cm+ls": "cutmix=1,label_smoothing=1",
}


def get_sweep() -> list[dict]:
    runs = [
        dict(name=f"{dataset}_{protocol}", config=f"configs/{dataset}_{protocol}.py")
        for dataset in DATASETS
        for protocol in ("baseline", "modern")
    ]
    runs += [
        dict(name=f"cifar100_{name}", config=f"configs/cifar100_ablation.py:{arg}")
        for name, arg in ABLATION.items()
    ]
    return runs
