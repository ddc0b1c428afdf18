"""Load a whole split into memory as NumPy arrays, from local files or from tfds.

A tfds dataset that is not prepared yet is downloaded; first each host it would be downloaded
from must accept a connection within `CONNECT_TIMEOUT_S` (through the proxy the environment
names, if any), so that offline the error comes at once rather than after tfds' retries (3.5
minutes for CIFAR-100).
"""

from __future__ import annotations

import pathlib
import socket
import urllib.parse
import urllib.request

import ml_collections
import numpy as np

from vit_locality.data import files
from vit_locality.datasets import DATASETS
from vit_locality.errors import DataError, first_line


def load_split(config: ml_collections.ConfigDict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 [N, H, W, C], labels int32 [N]) of `split` ("train" or "test")."""
    info = DATASETS[config.dataset]
    if config.data.source == "files":
        if config.dataset not in files.READERS:
            raise DataError(f"data.source: 'files' has no reader for {config.dataset} yet")
        if not config.data.dir:
            raise DataError(
                f"data.dir: empty; with data.source='files' it must hold {info.files_layout}"
            )
        return files.READERS[config.dataset](config.data.dir, split)
    return _load_tfds(config, split)


def _load_tfds(config: ml_collections.ConfigDict, split: str) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf
    import tensorflow_datasets as tfds

    tf.config.set_visible_devices([], "GPU")
    info = DATASETS[config.dataset]
    prepare_kwargs = {}
    if config.dataset == "tiny_imagenet":
        from vit_locality.data import tiny_imagenet  # noqa: F401  (registers the tfds builder)

        if config.data.dir:  # a tiny-imagenet-200.zip or folder there is used, not downloaded
            manual = tfds.download.DownloadConfig(manual_dir=config.data.dir)
            prepare_kwargs["download_config"] = manual
    offline = "Offline, use the local files: --config.data.source=files --config.data.dir=PATH"
    try:
        if unreachable := _unreachable_host(config):
            raise DataError(
                f"dataset {config.dataset}: tfds would download it from {unreachable}. "
                f"{offline} where PATH holds {info.files_layout}"
            )
        images, labels = tfds.as_numpy(
            tfds.load(
                info.tfds_name,
                split=split,
                batch_size=-1,
                as_supervised=True,
                data_dir=config.data.dir or None,
                download_and_prepare_kwargs=prepare_kwargs,
            )
        )
    except DataError:
        raise
    except Exception as e:  # tfds raises many kinds (download, missing builder, checksums).
        raise DataError(
            f"dataset {config.dataset}: tfds could not load it ({first_line(e)}). {offline} "
            f"where PATH holds {info.files_layout}"
        ) from e
    return np.asarray(images, np.uint8), np.asarray(labels, np.int32)


CONNECT_TIMEOUT_S = 5.0


def _unreachable_host(config: ml_collections.ConfigDict) -> str | None:
    """ "HOST:PORT, which cannot be reached (REASON)" for the first host tfds would download
    `config.dataset` from that does not accept a connection; None when it is prepared in the
    tfds data dir, its files are in the manual dir (Tiny-ImageNet), or every host answers."""
    import tensorflow_datasets as tfds

    name = DATASETS[config.dataset].tfds_name
    builder = tfds.builder(name, data_dir=config.data.dir or None)
    if (builder.data_path / "dataset_info.json").exists():  # prepared (is_prepared() logs a
        return None  # warning when not)
    if config.dataset == "tiny_imagenet":
        from vit_locality.data import tiny_imagenet_files

        if config.data.dir and tiny_imagenet_files.locate(pathlib.Path(config.data.dir)):
            return None
    checked = set()
    for url in download_urls(builder):
        address = _address(url)
        if address in checked:
            continue
        checked.add(address)
        try:
            socket.create_connection(address, timeout=CONNECT_TIMEOUT_S).close()
        except OSError as e:
            reason = e.strerror or str(e) or type(e).__name__
            return f"{address[0]}:{address[1]}, which cannot be reached ({reason})"
    return None


def download_urls(builder) -> list[str]:
    """The URLs tfds downloads `builder`'s dataset from: its checksums' (tfds' own builders),
    or the Tiny-ImageNet builder's zip."""
    if builder.name == "tiny_imagenet":
        from vit_locality.data import tiny_imagenet_files

        return [tiny_imagenet_files.URL]
    return list(builder.url_infos or {})


def _address(url: str) -> tuple[str, int]:
    """(host, port) a download of `url` connects to: the proxy the environment names for its
    scheme (HTTPS_PROXY etc., unless NO_PROXY exempts the host), else the URL's host."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
