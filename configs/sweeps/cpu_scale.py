"""A reduced-scale CPU probe of the paper's finding (CutMix makes first-layer heads local).

This is NOT the paper's setting: a smaller ViT, 5,085 CIFAR-10 images instead of CIFAR-100, no
AutoAugment, about 8,000 steps, on two CPU cores. It asks whether the direction of the finding
(with CutMix, a first-layer head attends more locally than any without) shows up at a scale a
laptop can train, and how the gap grows with steps. Two runs, one condition each:

- `baseline`: the Baseline protocol (pad-4 random crop + flip);
- `cutmix`: Baseline + CutMix on every batch (`mix.cutmix_alpha=1.0`, `mix.prob=1.0`).

Why each choice:

- Data: the real CIFAR-10 sample (DATA_DIR: 5,085 train / 1,017 test images of the official
  files, `data.source=files`), the only real colour train set available offline. It is held on
  the device and augmented there (`data.on_device=True`): no TensorFlow in the loop, one process
  per core.
- Model: width 128, depth 6, 8 heads, MLP 256, patch 4 (an 8x8 token grid, as the paper-size
  ViT has at 32 px): about half the paper-size model's step time, so ~8,000 steps fit in a few
  sessions of two cores, with as many heads per layer to take a minimum over.
- Schedule: linear warmup over 5 epochs (195 steps of 128), then a constant learning rate
  (`schedule=constant`): a cosine to zero over so short a run anneals before the gap can open
  (a 1,950-step cosine run gave 0.443 vs 0.433); constant keeps every trained step at the peak
  and lets the runs be extended without changing the schedule behind them.
- Length: 8,000 steps (~200 epochs of the sample), batch 128, the default AdamW (lr 1e-3,
  wd 0.05, clip 1).
- Measurements: locality (first-layer min MAD, `locality/min_mad_first_layer` in
  metrics.jsonl) every 250 steps on the first 512 test images, enough for a curve and cheap
  beside 250 train steps; top-1 on the 1,017 test images every 1,000 steps; a checkpoint every
  250 steps, so a session cut loses at most 250 steps and the runs resume exactly.
- float32 compute: bfloat16 is slower on these CPUs.

Run it (one core per run, both at once, low priority; workdirs outside the repository):

    python -m vit_locality.sweep configs/sweeps/cpu_scale.py --root=/work/runs-cpu-scale \\
        --config.data.dir=/path/to/cifar10-sample --print   # one command line per run
    XLA_FLAGS=--xla_force_host_platform_device_count=1 nohup nice -n 19 taskset -c 0 \\
        <the baseline command> > /work/runs-cpu-scale/baseline_seed0.log 2>&1 &
    # the same for cutmix on core 1; run the same commands again to resume after a stop
    python -m vit_locality.report /work/runs-cpu-scale --out=/work/runs-cpu-scale/report

The numbers come from `results/DATE-cpu-scale/` (packed by `scripts/pack_cpu_scale.py`): each
run's config.json, metrics.jsonl, locality.json and plots, the report with the curve of
first-layer min MAD against steps and the gap (Baseline minus CutMix) at every analysis step.
The paper (CIFAR-100, paper-size ViT, AutoAugment on) has every condition with CutMix at
min MAD <= 0.024 and every one without >= 0.210.
"""

SEEDS = 1
DATA_DIR = "data/cifar10-sample"  # --config.data.dir=DIR (a sweep flag) points elsewhere
CONFIG = "configs/cifar10_baseline.py"
TOTAL_STEPS = 8000
COMMON = {
    "data.source": "files",
    "data.dir": DATA_DIR,
    "data.on_device": True,
    "model.width": 128,
    "model.depth": 6,
    "model.num_heads": 8,
    "model.mlp_dim": 256,
    "batch_size": 128,
    "total_steps": TOTAL_STEPS,
    "warmup_epochs": 5.0,
    "schedule": "constant",
    "eval_every_steps": 1000,
    "evals.locality.every_steps": 250,
    "analysis.num_images": 512,
    "ckpt_every_steps": 250,
}
CONDITIONS = {  # name -> overrides on top of COMMON
    "baseline": {},
    "cutmix": {"mix.cutmix_alpha": 1.0, "mix.prob": 1.0},
}


def get_sweep() -> list[dict]:
    return [
        dict(name=name, config=CONFIG, overrides={**COMMON, **overrides})
        for name, overrides in CONDITIONS.items()
    ]
