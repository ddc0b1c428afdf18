"""CIFAR-100 ablation: any subset of the Modern protocol's three components on top of Baseline.

The argument switches each component on (1) or off (0, the default): `autoaugment` (CIFAR-10
policy), `cutmix` (alpha 1, every batch) and `label_smoothing` (0.1), plus `smoke`. All 0 is
the Baseline protocol, all 1 the Modern one; the 8 subsets are the paper's ablation
(`configs/sweeps/paper.py` runs them all):

    python -m vit_locality.main --config=configs/cifar100_ablation.py:cutmix=1
    python -m vit_locality.main --config=configs/cifar100_ablation.py:autoaugment=1,cutmix=1
    python -m vit_locality.main --config=configs/cifar100_ablation.py:smoke,cutmix=1

`config.protocol` is "ablation" for every subset; the components are the config fields
themselves (`aug.autoaugment`, `mix.cutmix_alpha` with `mix.prob`, `label_smoothing`), and
`python -m vit_locality.report` names each condition from them ("baseline", "aa", "cm+ls", ...,
"modern"), so a run with overridden fields is never mislabelled.

The paper's result (first-layer minimum MAD): CutMix is decisive. Every condition with CutMix has
a minimum MAD <= 0.024, every condition without it >= 0.210 (Baseline 0.316, Modern 0.008).
"""

from configs import common
from vit_locality.augment import protocol, registry

# The Modern components on CIFAR-100, by their names in vit_locality.augment.registry.
COMPONENTS = tuple(registry.by_key()[key].name for key in protocol.modern_components("cifar100"))


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, smoke=False, **dict.fromkeys(COMPONENTS, False))
    config = common.get_config("cifar100", "ablation", "smoke" if args.smoke else None)
    for name in COMPONENTS:
        if args[name]:
            protocol.switch_on(config, registry.by_name(name).key)
    return config
