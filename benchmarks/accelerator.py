"""One visit to a lent GPU in one command: the numbers it is for, under one hard deadline.

    python benchmarks/accelerator.py --out=OUT [--budget_s=540] [--data=data] [--tiny]

Run it from a plain copy of the repository: nothing pip-installed, no TensorFlow, ml-collections
from its wheel on PYTHONPATH if need be, DATA holding `cifar10-sample/` and `fashion-mnist/`.
Stages, most valuable first; each starts only when time is left for it:

1. env: device kind and count, versions, XLA flags.
2. tests: the test files that need no TensorFlow. Passed / failed / skipped / error counts come
   from pytest's line per test, so they are kept whatever its exit code, even when it is stopped.
3. speed: our train step (jit, bfloat16) against timm + torch.compile (bfloat16), batch 512,
   32 px, median of 5 windows: the `speed` row holds the ratio and both MFUs. Then our bfloat16
   step at the reproduction's batch (128), which sizes the reproduction.
4. reproduction: `scripts/reproduce.py`, sized from 3's throughput, with all the time left but
   RESERVE_S.
5. more speed rows while time is left: float32, timm eager, batch 2048, 64 px, the locality pass.

OUT holds four files, written as the visit goes, so that a kill at any moment leaves everything
finished before it:

    results.jsonl        one JSON row per result, appended as it comes
    log.txt              every command with its status, seconds and output, appended
    summary.md           the headline numbers, rewritten after every stage
    reproduction.tar.gz  the reproduction's results folder, rewritten after every run

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
import re
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a plain copy: `python benchmarks/X.py` puts only benchmarks/ there
from vit_locality import process_group  # noqa: E402

# Every child: the repository on its import path (`python benchmarks/X.py` puts only benchmarks/
# there, and nothing is pip-installed); JAX takes GPU memory as it needs it, not 75% at start, so
# the processes a test starts find room beside the test's own.
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    "PYTHONUNBUFFERED": "1",
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
}
NO_TENSORFLOW_TESTS = (  # cheapest first: a stop at the limit keeps the most counts
    "tests/test_rng.py",
    "tests/test_model.py",
    "tests/test_locality.py",
    "tests/test_mixing.py",
    "tests/test_erasing.py",
    "tests/test_step.py",
    "tests/test_analysis_pass.py",
    "tests/test_device_input.py",
    "tests/test_device_modern.py",
)
VERSIONS = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections", "torch", "timm")
GOALS = {"ratio": 1.5, "mfu": 0.30}  # ours over timm + torch.compile, and our MFU, in bf16
RESERVE_S = 45  # kept from the reproduction for stage 5 and the last summary
OUTCOME = re.compile(r"^(tests/\S+::\S+).* (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")

FULL = {
    "tests": NO_TENSORFLOW_TESTS,
    "tests_limit_s": 100,
    "step_limit_s": 240,
    "batch": 512,
    "repro_batch": 128,  # scripts/reproduce.py's BATCH_SIZE
    "step_args": ["--steps=10", "--windows=5"],
    "extra_batch": 2048,
    "analysis_args": ["--cases=32px_patch4,64px_patch4", "--batch_size=256", "--batches=3"],
    "reserve_s": RESERVE_S,
    "min_start_s": 20,
    "repro_args": [],
}
TINY = {
    "tests": ("tests/test_rng.py",),
    "tests_limit_s": 120,
    "step_limit_s": 120,
    "batch": 8,
    "repro_batch": 8,
    "step_args": ["--steps=1", "--windows=2"],
    "extra_batch": None,
    "analysis_args": ["--cases=32px_patch4", "--batch_size=8", "--batches=1"],
    "reserve_s": 10,
    "min_start_s": 5,
    "repro_args": ["--tiny", "--max_runs=2"],
}


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

    def left(self) -> float:
        """Seconds until the deadline."""
        return self.budget_s - (time.monotonic() - self.began)

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


def environment(visit: Visit, sizes: dict) -> None:
    probe = "import jax; d = jax.devices(); print(d[0].device_kind, len(d), sep='|')"
    code, text = visit.run([sys.executable, "-c", probe], 120)
    found = [line for line in text.splitlines() if line.count("|") == 1]
    kind, count = found[-1].split("|") if code == 0 and found else ("?", "0")
    visit.row(
        {
            "name": "env",
            "device_kind": kind,
            "device_count": int(count),
            "versions": {package: version(package) for package in VERSIONS},
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "python": sys.version.split()[0],
        }
    )


def tests(visit: Visit, sizes: dict) -> None:
    """pytest on the TensorFlow-free files, counted from its line per test (`-v`)."""
    files = sizes["tests"]
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--color=no"]
    code, text = visit.run([*command, *files], sizes["tests_limit_s"])
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    key = {"PASSED": "passed", "XPASS": "passed", "FAILED": "failed", "ERROR": "errors"}
    not_passed = []
    for match in filter(None, map(OUTCOME.match, text.splitlines())):
        outcome = key.get(match[2], "skipped")  # SKIPPED, XFAIL
        counts[outcome] += 1
        if outcome in ("failed", "errors"):
            not_passed.append(match[1])
    visit.row({"name": "pytest", **counts, "exit": code, "not_passed": not_passed, "files": files})


def measure(
    visit: Visit, sizes: dict, framework: str, model: str, batch: int, dtype: str, mode: str
) -> dict | None:
    """One train-step row: ours (`jit`) or timm's twin (`eager` | `compile`); None when the
    command gave none (timm missing, a failure, the limit)."""
    script = "train_step.py" if framework == "jax" else "timm_step.py"
    command = [sys.executable, str(REPO / "benchmarks" / script), f"--models={model}"]
    command += [f"--batch_size={batch}", f"--dtypes={dtype}", *sizes["step_args"]]
    command += ["--compile"] if mode == "compile" else []
    began = time.monotonic()
    _, text = visit.run(command, sizes["step_limit_s"])
    visit.step_seconds.append(time.monotonic() - began)
    rows = [
        {**r, "name": "train_step", "model": model, "framework": framework, "mode": mode}
        for r in json_rows(text)
    ]
    for row in rows:
        visit.row(row)
    return rows[0] if rows else None


def speed(visit: Visit, sizes: dict) -> float | None:
    """Stage 3: ours against timm + torch.compile in bf16 (the `speed` row); returns our bf16
    img/s at the reproduction's batch size."""
    batch = sizes["batch"]
    ours = measure(visit, sizes, "jax", "cifar", batch, "bfloat16", "jit")
    timm = measure(visit, sizes, "torch", "cifar", batch, "bfloat16", "compile")
    ratio = ours["img_per_s"] / timm["img_per_s"] if ours and timm else None
    visit.row(
        {
            "name": "speed",
            "batch_size": batch,
            "dtype": "bfloat16",
            "ours_img_per_s": ours and ours["img_per_s"],
            "timm_compile_img_per_s": timm and timm["img_per_s"],
            "ratio": ratio,
            "ours_mfu": ours and ours.get("mfu"),
            "timm_mfu": timm and timm.get("mfu"),
            "goals": GOALS,
        }
    )
    if sizes["repro_batch"] != batch:
        ours = measure(visit, sizes, "jax", "cifar", sizes["repro_batch"], "bfloat16", "jit")
    return ours["img_per_s"] if ours else None


def reproduction(visit: Visit, sizes: dict, data: str, img_per_s: float | None) -> None:
    """Stage 4: scripts/reproduce.py with the time left but the reserve; its folder comes back
    as OUT/reproduction.tar.gz (rewritten after each run)."""
    work = REPO / "runs" / "accelerator"  # a rerun on the same machine resumes its runs
    pack_s = 30  # SIGTERM to the run, its checkpoint, the last pack
    budget = visit.left() - sizes["reserve_s"] - pack_s
    if budget < sizes["min_start_s"]:
        raise NoTime
    command = [
        sys.executable,
        str(REPO / "scripts" / "reproduce.py"),
        f"--out={work / 'reproduction'}",
    ]
    command += [f"--root={work / 'runs'}", f"--data={data}", f"--budget_s={budget:.0f}"]
    command += [f"--archive={visit.out / 'reproduction.tar.gz'}", *sizes["repro_args"]]
    command += [f"--img_per_s={img_per_s:.1f}"] if img_per_s else []
    code, _ = visit.run(command, budget + pack_s, grace_s=pack_s)
    record_file, summary_file = (
        work / "reproduction" / "reproduce.json",
        work / "reproduction" / "summary.md",
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
        f"{visit.budget_s:.0f} s, {time.monotonic() - visit.began:.0f} s so far. Versions: "
        + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items() if v),
    ]
    for speed in named.get("speed", []):
        ratio = speed["ratio"]
        lines += [
            "",
            "## Speed",
            "",
            f"Ours over timm + torch.compile, bfloat16, batch {speed['batch_size']}, 32 px: "
            + (f"**{ratio:.2f}x**" if ratio else "no ratio (a row is missing: see log.txt)")
            + f", goal {GOALS['ratio']}x. MFU: ours {percent(speed['ours_mfu'])}, "
            f"timm's {percent(speed['timm_mfu'])}, goal {percent(GOALS['mfu'])}.",
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
    for row in named.get("pytest", []):
        lines += [
            "",
            f"## Tests without TensorFlow: {row['passed']} passed, {row['failed']} failed, "
            f"{row['skipped']} skipped, {row['errors']} errors (pytest exit {row['exit']})",
        ]
        lines += [f"- not passed: {name}" for name in row["not_passed"]]
    if visit.reproduction_summary:
        lines += ["", "## Reproduction", "", visit.reproduction_summary.rstrip()]
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
    try:
        stage(visit, sizes, "env", environment)
        stage(visit, sizes, "tests", tests)
        img_per_s = stage(visit, sizes, "speed", speed)
        stage(visit, sizes, "reproduction", reproduction, str(data), img_per_s)
        stage(visit, sizes, "more_speed", more_speed)
    except process_group.Stopped:
        visit.row({"name": "stopped", "reason": "SIGTERM", "left_s": round(visit.left())})
    visit.row({"name": "done", "wall_s": round(time.monotonic() - visit.began, 1)})
    visit.write_summary()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
