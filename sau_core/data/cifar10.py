"""CIFAR-10 from its official python batches (read with the restricted unpickler)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .core import DatasetInfo, DataUnavailable, ImageData, Split, resize
from .safe_io import (
    _check_resolution,
    _data_root,
    _download,
    _load_data_pickle,
    _str_keys,
    _uint8_to_float,
)

# ------------------------------------------------------------------------------------- cifar10
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_META_FILE = "batches.meta"
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch: uint8 images (N, 3, 32, 32) and int64 labels (N,)."""
    entry = _str_keys(_load_data_pickle(path), path)
    data, labels = entry.get("data"), entry.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape (N, 3072)")
    if data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: 'data' rows must hold 3072 values, got {data.shape[1]}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: 'labels' must be a list of integers") from None
    if y.shape != (len(data),) or (len(y) and (y.min() < 0 or y.max() > 9)):
        raise ValueError(f"{path}: 'labels' must hold {len(data)} integers in [0, 9]")
    # Each row is the red plane, then green, then blue, each 32x32 in row-major order.
    return data.reshape(-1, 3, 32, 32), y


def _cifar10_classes(folder: Path) -> tuple[str, ...]:
    """Class names from ``batches.meta`` when present and sane, else the standard ten."""
    path = folder / CIFAR10_META_FILE
    if not path.is_file():
        return CIFAR10_CLASSES
    names = _str_keys(_load_data_pickle(path), path).get("label_names")
    if not isinstance(names, (list, tuple)) or len(names) != 10:
        return CIFAR10_CLASSES
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def _cifar10_status(root: str | Path | None) -> tuple[bool, str]:
    folder = _data_root(root) / CIFAR10_FOLDER
    missing = [f for f in (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE) if not (folder / f).is_file()]
    if not missing:
        return True, f"CIFAR-10 found in {folder}"
    return False, (
        f"CIFAR-10 not found: expected data_batch_1 ... data_batch_5, test_batch and "
        f"batches.meta in {folder} (missing: {', '.join(missing)}). Extract the official "
        f"archive {CIFAR10_ARCHIVE} into {folder.parent}, or pass download=True (--download) to "
        f"fetch it when online."
    )


def load_cifar10(
    root: str | Path | None = None,
    *,
    resolution: int | None = None,
    seed: int = 0,
    download: bool = False,
) -> Split:
    """CIFAR-10 (50,000 train / 10,000 test RGB photos, 32x32, 10 classes), the official split.

    Args:
        root (str | Path | None): folder holding ``cifar-10-batches-py/``; default
            :data:`DEFAULT_ROOT`.
        resolution (int | None): ``None`` (default) keeps 32x32; an int resizes bilinearly.
        seed (int): accepted for a uniform loader signature; the official split is fixed.
        download (bool): fetch and extract ``cifar-10-python.tar.gz`` when the files are missing
            (default ``False``). Failures raise :class:`DataUnavailable`.

    The batch files are pickles, read with :class:`SafeUnpickler`, never with plain pickle.
    """
    del seed  # the official split is fixed
    if resolution is not None:
        _check_resolution(resolution, "cifar10")
    ok, why = _cifar10_status(root)
    if not ok:
        if not download:
            raise DataUnavailable(why)
        from torchvision.datasets import CIFAR10
        from torchvision.datasets import utils as tv_utils

        # torchvision's own download step (same URL and checksum). Constructing CIFAR10 itself
        # would unpickle the batches with plain pickle, so the files are read below instead.
        _download(
            "CIFAR-10",
            lambda: tv_utils.download_and_extract_archive(
                CIFAR10.url, str(_data_root(root)), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5
            ),
            why,
        )
        ok, why = _cifar10_status(root)
        if not ok:
            raise DataUnavailable(why)
    folder = _data_root(root) / CIFAR10_FOLDER
    batches = [_read_cifar_batch(folder / f) for f in CIFAR10_TRAIN_FILES]
    x_train = _uint8_to_float(np.concatenate([b[0] for b in batches]))
    y_train = torch.from_numpy(np.concatenate([b[1] for b in batches]))
    x_test, y_test = _read_cifar_batch(folder / CIFAR10_TEST_FILE)
    x_test, y_test = _uint8_to_float(x_test), torch.from_numpy(y_test)
    size = 32 if resolution is None else int(resolution)
    info = DatasetInfo(
        name="cifar10",
        num_classes=10,
        shape=(3, size, size),
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        natural=True,
        class_names=_cifar10_classes(folder),
        params={"resolution": size},
    )
    return Split(
        ImageData(resize(x_train, size), y_train, info),
        ImageData(resize(x_test, size), y_test, info),
    )
