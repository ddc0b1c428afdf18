"""The paper's central finding, reproduced without TensorFlow: CutMix makes early heads local.

The CutMix ablation that needs no AutoAugment (Baseline, +CutMix, +label smoothing, +CutMix
+label smoothing), with the paper-size ViT (width 192, depth 9, 12 heads, MLP 384), bfloat16
compute (the analysis stays float32) and the input on the accelerator (`data.on_device=True`),
on real images read from DATA (`data/` in the repository, ignored by git):

- `c10_*`: the real CIFAR-10 sample (DATA/cifar10-sample: 5,085 train / 1,017 test), 100 epochs;
- `fmnist_*`: Fashion-MNIST (DATA/fashion-mnist: 60,000 / 10,000), FMNIST_EPOCHS epochs.

    python scripts/reproduce.py --out=results/DATE-DEVICE-cutmix   # priority order, time budget
    python -m vit_locality.sweep configs/sweeps/reproduce.py --root=runs/reproduce --seeds=2

`scripts/reproduce.py` trains these two at a time (Baseline and +CutMix on Fashion-MNIST first,
then on the CIFAR-10 sample, then the other two conditions, then seed 1) within a time budget,
each pair toward the paper's 39,000 optimizer steps per run (`total_steps`, sized from the
device's measured throughput, `--img_per_s`, over the epochs below, which are for
`vit_locality.sweep`). The paper (CIFAR-100, AutoAugment on): every condition with CutMix has
first-layer min MAD <= 0.024, every one without >= 0.210.
"""

SEEDS = 2
DATA = "data"
C10_EPOCHS, FMNIST_EPOCHS = 100, 10
CONDITIONS = {  # name -> overrides on top of the Baseline config
    "baseline": {},
    "cm": {"mix.cutmix_alpha": 1.0, "mix.prob": 1.0},
    "ls": {"label_smoothing": 0.1},
    "cm+ls": {"mix.cutmix_alpha": 1.0, "mix.prob": 1.0, "label_smoothing": 0.1},
}
COMMON = {"data.source": "files", "data.on_device": True, "model.dtype": "bfloat16"}


def get_sweep() -> list[dict]:
    datasets = [
        ("c10", "configs/cifar10_baseline.py", f"{DATA}/cifar10-sample", C10_EPOCHS),
        ("fmnist", "configs/fashion_mnist_baseline.py", f"{DATA}/fashion-mnist", FMNIST_EPOCHS),
    ]
    return [
        dict(
            name=f"{short}_{condition}",
            config=config,
            overrides={**COMMON, "data.dir": data_dir, "total_epochs": epochs, **overrides},
        )
        for short, config, data_dir, epochs in datasets
        for condition, overrides in CONDITIONS.items()
    ]
