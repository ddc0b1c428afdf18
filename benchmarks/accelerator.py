"""One visit to a lent GPU in one command: the numbers it is for, under one hard deadline.

    python benchmarks/accelerator.py --out=OUT [--budget_s=540] [--data=data] [--tiny]

Run it from a plain copy of the repository: nothing pip-installed, no TensorFlow, ml-collections
from its wheel on PYTHONPATH if need be, DATA holding `cifar10-sample/` and `fashion-mnist/`.
Stages, most valuable first; each starts only when time is left for it:

1. env: device kind and count, versions, XLA flags. Fail fast: unless `--tiny`, JAX and torch
   must both see a GPU; otherwise one `error:` line and the visit stops (exit 2).
2. sizing: our train step (jit, bfloat16) at the reproduction's batch (128) on its first pair's
   model (Fashion-MNIST's), which sizes the reproduction. It and env end by
   `pre_pair_deadline_s`, so a slow start cannot take the pair's time.
3. reproduction: `scripts/reproduce.py`, its Baseline / +CutMix pair trained at once toward the
   paper's 39,000 steps per run, with `pair_budget_s`: at least PAIR_SHARE of the budget.
4. speed: our train step against timm + torch.compile, bfloat16, batch 512, 32 px, median of 5
   windows: the `speed` row holds the ratio and both MFUs (model FLOPs by one formula,
   `vit_locality.flops`; XLA's own count is a side field, as it scores cuBLAS calls -1 on GPUs).
5. more speed rows while time is left: float32, timm eager, batch 2048, 64 px, the locality pass.

The test suite does not run here: CI runs it on every change, and on one GPU its multi-device
and float32 (TF32) checks would fail for reasons that are not the code's.

Every child shares one JAX compilation cache (`runs/accelerator/jax_cache`, or the environment's
JAX_COMPILATION_CACHE_DIR where it names one, as the test suite's does). OUT holds four files,
written as the visit goes, so that a kill at any moment leaves everything finished before it:

    results.jsonl        one JSON row per result, appended as it comes
    log.txt              every command with its status, seconds and output, appended
    summary.md           the headline numbers, rewritten after every stage
    reproduction.tar.gz  the reproduction's results folder, rewritten after every pair

Every child runs in its own process group and is stopped whole (SIGTERM, then SIGKILL) at its
limit, which is never past the deadline; a SIGTERM to the visit stops its child and writes the
summary. `--tiny` runs every stage at tiny sizes on a CPU (tests/test_accelerator.py).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a plain copy: `python benchmarks/X.py` puts only benchmarks/ there
from vit_locality import process_group  # noqa: E402

WORK = REPO / "runs" / "accelerator"  # the runs' workdirs: a rerun on the same machine resumes
# Every child: the repository on its import path (`python benchmarks/X.py` puts only benchmarks/
# there, and nothing is pip-installed); JAX takes GPU memory as it needs it, not 75% at start, so
# the two runs of a pair share the one GPU; one persistent compilation cache for every stage.
ENV = {
    "JAX_COMPILATION_CACHE_DIR": str(WORK / "jax_cache"),  # unless the environment names one
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    "PYTHONUNBUFFERED": "1",
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
}
VERSIONS = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections", "torch", "timm")
GOALS = {"ratio": 1.5, "mfu": 0.30}  # ours over timm + torch.compile, and our MFU, in bf16
PAIR_SHARE = 0.6  # of the budget, at least, for the reproduction's training
PACK_S = 30  # after the reproduction's budget: SIGTERM to its runs, their checkpoints, the pack
PROBE = """
import json
found = {}
try:
    import jax
    devices = jax.devices()
    found.update(platform=devices[0].platform, kind=devices[0].device_kind, count=len(devices))
except Exception as e:
    found["jax_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
try:
    import torch
    found["torch_cuda"] = torch.cuda.is_available()
except ImportError:
    found["torch_cuda"] = None
print("PROBE" + json.dumps(found))
"""

FULL = {
    "gpu_required": True,
    "env_limit_s": 90,
    "step_limit_s": 240,
    "batch": 512,
    "repro_batch": 128,  # scripts/reproduce.py's BATCH_SIZE
    "step_args": ["--steps=10", "--windows=5"],
    "extra_batch": 2048,
    "analysis_args": ["--cases=32px_patch4,64px_patch4", "--batch_size=256", "--batches=3"],
    "speed_reserve_s": 150,  # the batch-512 comparison after the reproduction
    "min_start_s": 20,
    "repro_args": [],
}
TINY = {
    "gpu_required": False,
    "env_limit_s": 60,
    "step_limit_s": 120,
    "batch": 8,
    "repro_batch": 8,
    "step_args": ["--steps=1", "--windows=2"],
    "extra_batch": None,
    "analysis_args": ["--cases=32px_patch4", "--batch_size=8", "--batches=1"],
    "speed_reserve_s": 30,
    "min_start_s": 5,
    "repro_args": ["--tiny", "--max_pairs=1"],
}


def pre_pair_deadline_s(budget_s: float) -> float:
    """Seconds into the visit by which the stages before the reproduction end, whatever they
    meet: what is left then is at least PAIR_SHARE of the budget, and PACK_S."""
    return budget_s * (1 - PAIR_SHARE) - PACK_S


def pair_budget_s(budget_s: float, left_s: float, speed_reserve_s: float) -> float:
    """The reproduction's training seconds when it starts with `left_s` of `budget_s` left:
    everything but the speed comparison's reserve, and at least PAIR_SHARE of the budget; never
    more than `left_s` less PACK_S."""
    wanted = max(PAIR_SHARE * budget_s, left_s - speed_reserve_s - PACK_S)
    return min(wanted, left_s - PACK_S)


class GpuMissing(Exception):
    """JAX or torch does not see the GPU: the visit would spend its time on a CPU."""


class NoTime(Exception):
    """Too little time is left for the stage to do anything."""


class Visit:
    """OUT's files, the rows so far and the deadline every child is held to."""

    def __init__(self, out: pathlib.Path, budget_s: float, argv: list[str]):
        out.mkdir(parents=True, exist_ok=True)
        self.out, self.began, self.budget_s, self.argv = out, time.monotonic(), budget_s, argv
        self.results, self.log = out / "results.jsonl", out / "log.txt"
        self.rows: list[dict] = []
        self.step_seconds: list[float] = []  # wall time of each train-step measurement
        self.reproduction_summary = ""

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def left(self) -> float:
        """Seconds until the deadline."""
        return self.budget_s - self.elapsed()

    def row(self, row: dict) -> None:
        self.rows.append(row)
        with self.results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    def run(
        self, command: list[str], limit_s: float, grace_s: float = 5.0
    ) -> tuple[int | None, str]:
        """Runs `command` from the repository root for at most `limit_s` seconds and never past
        the deadline; logs it, also when interrupted. Returns (exit code, or None when stopped
        at its limit; its output)."""
        timeout = max(min(limit_s, self.left() - grace_s - 2), 0)
        began, code, text = time.monotonic(), None, ""
        with tempfile.TemporaryFile("w+") as output:
            try:
                code = process_group.run(
                    command, timeout_s=timeout, cwd=REPO, env=ENV, output=output, grace_s=grace_s
                )
            finally:
                output.seek(0)
                text = output.read()
                status = f"exit {code}" if code is not None else f"stopped at {timeout:.0f} s"
                with self.log.open("a") as log:
                    log.write(f"$ {' '.join(command)}\n")
                    log.write(f"[{status}, {time.monotonic() - began:.1f} s]\n{text[-40000:]}\n")
        return code, text

    def write_summary(self) -> None:
        """summary.md from the rows so far, replaced in one rename."""
        partial = self.out / "summary.md.partial"
        partial.write_text("\n".join(summary_lines(self)) + "\n")
        os.replace(partial, self.out / "summary.md")


def json_rows(text: str) -> list[dict]:
    rows = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------- the stages


def environment(visit: Visit, sizes: dict) -> str:
    """The env row; returns JAX's device kind. GpuMissing (when `gpu_required`) unless JAX's
    devices are GPUs and torch sees CUDA."""
    code, text = visit.run([sys.executable, "-c", PROBE], sizes["env_limit_s"])
    found = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("PROBE{")]
    probe = found[-1] if code == 0 and found else {"jax_error": f"the probe failed (exit {code})"}
    visit.row(
        {
            "name": "env",
            "device_kind": probe.get("kind", "?"),
            "device_count": probe.get("count", 0),
            "platform": probe.get("platform", "?"),
            "torch_cuda": probe.get("torch_cuda"),
            "versions": {package: version(package) for package in VERSIONS},
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "python": sys.version.split()[0],
        }
    )
    if sizes["gpu_required"]:
        problems = []
        if probe.get("platform") != "gpu":
            seen = probe.get("jax_error") or f"{probe['platform']} x {probe['count']}"
            problems.append(f"JAX sees no GPU ({seen})")
        if not probe.get("torch_cuda"):
            torch_state = "not installed" if probe.get("torch_cuda") is None else "no CUDA"
            problems.append(f"torch sees no GPU ({torch_state})")
        if problems:
            raise GpuMissing("; ".join(problems))
    return probe.get("kind", "?")


def measure(
    visit: Visit,
    sizes: dict,
    framework: str,
    model: str,
    batch: int,
    dtype: str,
    mode: str,
    limit_s: float | None = None,
) -> dict | None:
    """One train-step row: ours (`jit`) or timm's twin (`eager` | `compile`), for at most
    `limit_s` (default: the step limit); None when the command gave none (timm missing, a
    failure, the limit)."""
    script = "train_step.py" if framework == "jax" else "timm_step.py"
    command = [sys.executable, str(REPO / "benchmarks" / script), f"--models={model}"]
    command += [f"--batch_size={batch}", f"--dtypes={dtype}", *sizes["step_args"]]
    command += ["--compile"] if mode == "compile" else []
    began = time.monotonic()
    _, text = visit.run(command, sizes["step_limit_s"] if limit_s is None else limit_s)
    visit.step_seconds.append(time.monotonic() - began)
    rows = [
        {**r, "name": "train_step", "model": model, "framework": framework, "mode": mode}
        for r in json_rows(text)
    ]
    for row in rows:
        visit.row(row)
    return rows[0] if rows else None


def sizing(visit: Visit, sizes: dict) -> float | None:
    """Stage 2: our bf16 step at the reproduction's batch on its first pair's model, ending by
    the pre-pair deadline; returns its img/s (None without a row)."""
    limit = pre_pair_deadline_s(visit.budget_s) - visit.elapsed()
    if limit < sizes["min_start_s"]:
        raise NoTime
    batch = sizes["repro_batch"]
    ours = measure(visit, sizes, "jax", "fashion_mnist", batch, "bfloat16", "jit", limit)
    return ours["img_per_s"] if ours else None


def reproduction(
    visit: Visit, sizes: dict, data: str, img_per_s: float | None, kind: str | None
) -> None:
    """Stage 3: scripts/reproduce.py for `pair_budget_s`; its folder comes back as
    OUT/reproduction.tar.gz (rewritten after each pair)."""
    budget = pair_budget_s(visit.budget_s, visit.left(), sizes["speed_reserve_s"])
    if budget < sizes["min_start_s"]:
        raise NoTime
    command = [
        sys.executable,
        str(REPO / "scripts" / "reproduce.py"),
        f"--out={WORK / 'reproduction'}",
    ]
    command += [f"--root={WORK / 'runs'}", f"--data={data}", f"--budget_s={budget:.0f}"]
    command += [f"--archive={visit.out / 'reproduction.tar.gz'}", f"--device_kind={kind or '?'}"]
    command += [f"--img_per_s={img_per_s:.1f}"] if img_per_s else []
    command += [f"--grace_s={PACK_S - 10}", *sizes["repro_args"]]
    code, _ = visit.run(command, budget + PACK_S, grace_s=PACK_S)
    record_file, summary_file = (
        WORK / "reproduction" / "reproduce.json",
        WORK / "reproduction" / "summary.md",
    )
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    visit.reproduction_summary = summary_file.read_text() if summary_file.is_file() else ""
    visit.row(
        {
            "name": "reproduction",
            "exit": code,
            "budget_s": round(budget),
            "img_per_s": img_per_s,
            "runs": record.get("runs", []),
        }
    )


def speed(visit: Visit, sizes: dict) -> None:
    """Stage 4: ours against timm + torch.compile in bf16 at the speed batch (the `speed` row:
    the ratio and both MFUs, from the same FLOPs formula)."""
    batch = sizes["batch"]
    ours = measure(visit, sizes, "jax", "cifar", batch, "bfloat16", "jit")
    timm = measure(visit, sizes, "torch", "cifar", batch, "bfloat16", "compile")
    visit.row(
        {
            "name": "speed",
            "batch_size": batch,
            "dtype": "bfloat16",
            "ours_img_per_s": ours and ours["img_per_s"],
            "timm_compile_img_per_s": timm and timm["img_per_s"],
            "ratio": ours["img_per_s"] / timm["img_per_s"] if ours and timm else None,
            "ours_mfu": ours and ours.get("mfu"),
            "timm_mfu": timm and timm.get("mfu"),
            "goals": GOALS,
        }
    )


def more_speed(visit: Visit, sizes: dict) -> None:
    """Stage 5: further rows, each while its expected time (1.2 x the median measurement so
    far) is left."""
    batch, extra = sizes["batch"], sizes["extra_batch"]
    cases = [
        ("jax", "cifar", batch, "float32", "jit"),
        ("torch", "cifar", batch, "float32", "compile"),
    ]
    cases += [("torch", "cifar", batch, "bfloat16", "eager")]
    if extra:
        cases += [
            ("jax", "cifar", extra, "bfloat16", "jit"),
            ("torch", "cifar", extra, "bfloat16", "compile"),
        ]
        cases += [
            ("jax", "tiny_imagenet", batch, "bfloat16", "jit"),
            ("torch", "tiny_imagenet", batch, "bfloat16", "compile"),
        ]
    for case in cases:
        if visit.left() < max(
            sizes["min_start_s"], 1.2 * statistics.median(visit.step_seconds or [0])
        ):
            return
        measure(visit, sizes, *case)
    if visit.left() > sizes["min_start_s"]:
        command = [
            sys.executable,
            str(REPO / "benchmarks" / "analysis.py"),
            *sizes["analysis_args"],
        ]
        _, text = visit.run(command, sizes["step_limit_s"])
        for row in json_rows(text):
            visit.row({**row, "name": "locality_pass", "framework": "jax"})


# ---------------------------------------------------------------------------------- summary.md


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """`vit_locality.report.tables.table`'s Markdown; that package imports JAX, which this
    process must not hold while its children use the accelerator."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def summary_lines(visit: Visit) -> list[str]:
    """The headline numbers of the rows so far, as Markdown."""
    named = {}
    for row in visit.rows:
        named.setdefault(row["name"], []).append(row)
    env = named.get("env", [{}])[0]
    lines = [
        f"# GPU visit: {env.get('device_kind', '?')} x {env.get('device_count', '?')}",
        "",
        f"`python benchmarks/accelerator.py {' '.join(visit.argv)}`: budget "
        f"{visit.budget_s:.0f} s, {visit.elapsed():.0f} s so far. Versions: "
        + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items() if v),
    ]
    if visit.reproduction_summary:
        lines += ["", "## Reproduction", "", visit.reproduction_summary.rstrip()]
    for speed in named.get("speed", []):
        ratio = speed["ratio"]
        lines += [
            "",
            "## Speed",
            "",
            f"Ours over timm + torch.compile, bfloat16, batch {speed['batch_size']}, 32 px: "
            + (f"**{ratio:.2f}x**" if ratio else "no ratio (a row is missing: see log.txt)")
            + f", goal {GOALS['ratio']}x. MFU (model FLOPs by formula over the peak): ours "
            f"{percent(speed['ours_mfu'])}, timm's {percent(speed['timm_mfu'])}, goal "
            f"{percent(GOALS['mfu'])}.",
        ]
    steps = named.get("train_step", [])
    if steps:
        header = ["framework", "mode", "model", "dtype", "batch", "img/s", "step ms", "MFU"]
        cells = [
            [r["framework"], r["mode"], r["model"], r["dtype"], str(r["batch_size"])]
            + [f"{r['img_per_s']:,.0f}", str(r.get("step_ms", "–")), percent(r.get("mfu"))]
            for r in steps
        ]
        lines += ["", *markdown_table(header, cells)]
    for row in named.get("locality_pass", []):
        lines.append(f"- locality pass, {row['image_size']} px: {row['img_per_s']:,.0f} img/s")
    stages = [[r["stage"], r["status"], f"{r['seconds']:.0f}"] for r in named.get("stage", [])]
    lines += ["", "## Stages", "", *markdown_table(["stage", "status", "seconds"], stages)]
    return lines


# ---------------------------------------------------------------------------------- main


def stage(visit: Visit, sizes: dict, name: str, function, *args):
    """Runs one stage when time is left for it; records it; rewrites summary.md."""
    began, status = time.monotonic(), "stopped (SIGTERM)"
    try:
        if visit.left() < sizes["min_start_s"]:
            raise NoTime
        result = function(visit, sizes, *args)
        status = "done"
        return result
    except NoTime:
        status = "no time left"
        return None
    except GpuMissing as e:
        status = f"failed: {e}"
        raise
    except process_group.Stopped:
        raise
    except Exception as e:  # a stage that breaks does not take the later ones with it
        status = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return None
    finally:
        seconds = round(time.monotonic() - began, 1)
        visit.row({"name": "stage", "stage": name, "status": status, "seconds": seconds})
        visit.write_summary()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/accelerator.py")
    parser.add_argument("--out", required=True, help="the four files go here")
    parser.add_argument("--budget_s", type=float, default=540.0, help="the visit's deadline")
    parser.add_argument("--data", default="data", help="holds cifar10-sample/, fashion-mnist/")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a CPU check")
    args = parser.parse_args(argv)
    data = pathlib.Path(args.data).resolve()
    for folder in ("cifar10-sample", "fashion-mnist"):
        if not (data / folder).is_dir():
            print(f"error: --data={args.data} has no {folder}/ (copy it from ../shared/data)",
                  file=sys.stderr)  # fmt: skip
            return 2
    sizes = TINY if args.tiny else FULL
    visit = Visit(pathlib.Path(args.out).resolve(), args.budget_s, argv)
    process_group.raise_on_sigterm()
    code = 0
    try:
        kind = stage(visit, sizes, "env", environment)
        img_per_s = stage(visit, sizes, "sizing", sizing)
        stage(visit, sizes, "reproduction", reproduction, str(data), img_per_s, kind)
        stage(visit, sizes, "speed", speed)
        stage(visit, sizes, "more_speed", more_speed)
    except GpuMissing as e:
        print(f"error: {e}: stopping the visit (OUT/results.jsonl has the env row)",
              file=sys.stderr)  # fmt: skip
        code = 2
    except process_group.Stopped:
        visit.row({"name": "stopped", "reason": "SIGTERM", "left_s": round(visit.left())})
    visit.row({"name": "done", "wall_s": round(visit.elapsed(), 1)})
    visit.write_summary()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
