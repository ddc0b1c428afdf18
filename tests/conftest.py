"""Test setup: 8 emulated CPU devices and one compilation cache, set before JAX is imported.

The 8 devices are 8 threads that meet at every collective; XLA:CPU aborts the process when one
has not arrived after 40 s, which a loaded 2-core machine can take. The tests allow 300 s.

JAX's persistent compilation cache: one directory for the whole test run, made by the process
that starts pytest and inherited through the environment by the xdist workers and by every
process a test starts, so a program compiled once (the TINY run's train step, its evaluators) is
loaded from disk everywhere else. A cached executable is the one the compiler produced, so
results are bit for bit those of a fresh compilation. A size limit turns on JAX's file lock
around each read and write (without it, one process could read an entry another is still
writing). The directory is removed when the run ends.
"""

import os
import pathlib
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=8"
    + " --xla_cpu_collective_call_terminate_timeout_seconds=300"
).strip()

_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="vit-locality-tests-jax-")
    # Programs that compile in under a second (an eager op each) are not worth a locked disk
    # write apiece: test_step's optimizer test, all eager ops on 8 devices, took 33 s with every
    # program cached and 25 s without them on the 2-core CPU.
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "1"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(8 << 30)

import fsspec  # noqa: E402
import pytest  # noqa: E402
from etils.epath import gpath  # noqa: E402
from fsspec.implementations.memory import MemoryFileSystem  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# The real data, each dataset from data/ in the repository where it was copied there (as on an
# accelerator machine, which gets only the repository), else from ../shared/data beside the
# checkout.
_DATA_DIRS = (REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "data")


def real_data(name: str) -> pathlib.Path:
    return next((d / name for d in _DATA_DIRS if (d / name).is_dir()), _DATA_DIRS[-1] / name)


CIFAR10_SAMPLE = real_data("cifar10-sample")
CIFAR100_SAMPLE = real_data("cifar100-sample")
FASHION_MNIST = real_data("fashion-mnist")
DATA_DIR = CIFAR10_SAMPLE.parent  # what scripts/reproduce.py --data takes
# locality.json's keys, in order, as docs/locality.md gives them.
LOCALITY_JSON_KEYS = [
    "step",
    "dataset",
    "num_images",
    "image_size",
    "patch_size",
    "grid",
    "num_prefix_tokens",
    "definitions",
    "per_head",
    "summary",
]


def cifar_locality_record(per_head, *, step: int, num_images: int) -> dict:
    """The locality.json record of a CLS ViT on CIFAR (32 px, patch 4, an 8x8 grid)."""
    from vit_locality.analysis.results import locality_record

    return locality_record(
        per_head,
        step=step,
        dataset="cifar10",
        num_images=num_images,
        image_size=32,
        patch_size=4,
        grid=(8, 8),
        num_prefix_tokens=1,
    )


@pytest.fixture(scope="session")
def cifar10_dir() -> pathlib.Path:
    """The real CIFAR-10 sample in the official binary layout; skips when absent."""
    if not (CIFAR10_SAMPLE / "test_batch.bin").exists():
        pytest.skip(f"real CIFAR-10 sample not found at {CIFAR10_SAMPLE}")
    return CIFAR10_SAMPLE


def analyze_main(*args) -> int:
    """`python -m vit_locality.analyze ARGS` in this process: the flags parsed as `app.run`
    has them parsed (`cli.parse_flags`: a bad flag is one line and exit 2), then
    `analyze.main`; returns the exit status (read what it printed with capfd). The flags are
    back at their defaults afterwards."""
    from absl import flags

    from vit_locality import analyze, cli

    try:
        analyze.main(cli.parse_flags(["vit_locality.analyze", *map(str, args)]))
    except SystemExit as e:
        return e.code
    finally:
        flags.FLAGS.unparse_flags()
    return 0


@pytest.fixture
def unreachable_downloads(tmp_path, monkeypatch):
    """tfds' download hosts replaced by a closed port of this machine (a connection is refused
    at once, whether the machine is online or not), tfds' default data dir by an empty folder,
    no proxy; returns the port and the names of the datasets tfds was asked to download and
    prepare (its `download_and_prepare` records them and does nothing else)."""
    import socket

    import tensorflow_datasets as tfds

    from vit_locality.data import sources

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(
        sources, "download_urls", lambda builder: [f"http://127.0.0.1:{port}/{builder.name}.tar"]
    )
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path / "tensorflow_datasets"))
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    prepared = []
    monkeypatch.setattr(
        tfds.core.DatasetBuilder,
        "download_and_prepare",
        lambda builder, *args, **kwargs: prepared.append(builder.name),
    )
    return port, prepared


class _FakeGcs(MemoryFileSystem):
    """fsspec's in-memory filesystem under the gs:// scheme, without append (as GCS: an object
    opened to append is written anew)."""

    protocol = ("gs", "gcs")

    def __init__(self, *args, finalize_on_close=True, **kwargs):
        super().__init__(*args, **kwargs)

    def _open(self, path, mode="rb", **kwargs):
        return super()._open(path, mode.replace("a", "w"), **kwargs)


@pytest.fixture
def fake_gcs(monkeypatch):
    """gs:// paths of etils.epath (what RunDir, the plots and orbax use) served from memory:
    epath's fsspec backend instead of tf.io.gfile, with fsspec's memory filesystem as gs://."""
    for name in _FakeGcs.protocol:
        fsspec.register_implementation(name, _FakeGcs, clobber=True)
    monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
    _FakeGcs.store.clear()
    _FakeGcs.pseudo_dirs.clear()
    _FakeGcs.pseudo_dirs.append("")
    yield "gs://bucket"
    _FakeGcs.store.clear()


def pytest_sessionfinish(session):
    """The process that made the compilation cache removes it (xdist workers inherit its
    directory, so they never own it)."""
    if _OWN_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
