"""Controls on CIFAR-100 that separate what CutMix does: label mixing vs partial image regions.

- `baseline`, `cutmix` (alpha 1, every batch): the two ends, as in the paper's ablation.
- `mixup` (alpha 0.8, timm's default, every batch): mixes labels but no regions.
- `erase_pixel`, `erase_const`: random erasing of one box per image (timm's RandomErasing, 2-33%
  of the area, filled with N(0, 1) noise or zeros = the mean colour, Cutout-like): partial regions
  without label mixing.
- `cutmix_a{0.25,0.5,2}`: CutMix's Beta(a, a), which sets the box size (alpha 1 is `cutmix`).
- `cutmix_p{0.25,0.5}`: the share of CutMix batches (1 is `cutmix`).
- `randaugment`, `trivialaugment`: torchvision's RandAugment (2 ops, magnitude 9) and
  TrivialAugmentWide in place of AutoAugment: does any strong per-image policy move early heads?
- `resizemix` (every batch): ResizeMix pastes the partner whole, shrunk, into a box: label mixing
  with a partial host image but a complete partner, between CutMix and Mixup.

    python -m vit_locality.sweep configs/sweeps/controls.py --root=runs/controls [--seeds=3]
    python -m vit_locality.report runs/controls --out=runs/controls/report

If CutMix's locality comes from the partial regions, erasing moves the first-layer minimum MAD
towards CutMix's and Mixup does not, and ResizeMix sits with CutMix; if it comes from any strong
augmentation, RandAugment and TrivialAugmentWide move it too. The paper did not run these.
"""

SEEDS = 1

CUTMIX = "configs/cifar100_ablation.py:cutmix=1"


def get_sweep() -> list[dict]:
    baseline = "configs/cifar100_baseline.py"
    runs = [
        dict(name="baseline", config=baseline),
        dict(name="cutmix", config=CUTMIX),
        dict(name="mixup", config=baseline, overrides={"mix.mixup_alpha": 0.8, "mix.prob": 1.0}),
        dict(name="erase_pixel", config=baseline, overrides={"aug.random_erasing": 1.0}),
        dict(
            name="erase_const",
            config=baseline,
            overrides={"aug.random_erasing": 1.0, "aug.random_erasing_mode": "const"},
        ),
    ]
    runs += [
        dict(name=f"cutmix_a{alpha}", config=CUTMIX, overrides={"mix.cutmix_alpha": alpha})
        for alpha in (0.25, 0.5, 2.0)
    ]
    runs += [
        dict(name=f"cutmix_p{prob}", config=CUTMIX, overrides={"mix.prob": prob})
        for prob in (0.25, 0.5)
    ]
    runs += [  # per-image policies of the same family as AutoAugment, and a region-based mix
        dict(name="randaugment", config=baseline, overrides={"aug.rand_augment": True}),
        dict(name="trivialaugment", config=baseline, overrides={"aug.trivial_augment": True}),
        dict(name="resizemix", config=baseline, overrides={"mix.resizemix_prob": 1.0}),
    ]
    return runs
