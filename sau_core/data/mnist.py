"""MNIST from its official raw IDX files."""

from __future__ import annotations

from pathlib import Path

import torch

from .core import DatasetInfo, DataUnavailable, ImageData, Split, resize
from .safe_io import _check_resolution, _data_root, _download, _uint8_to_float

# --------------------------------------------------------------------------------------- mnist
MNIST_RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


def _mnist_status(root: str | Path | None) -> tuple[bool, str]:
    raw = _data_root(root) / "MNIST" / "raw"
    processed = raw.parent / "processed"
    missing = [f for f in MNIST_RAW_FILES if not (raw / f).is_file()]
    if not missing:
        return True, f"MNIST found in {raw}"
    if all((processed / f).is_file() for f in ("training.pt", "test.pt")):
        return True, f"MNIST found in {processed} (torchvision's legacy format)"
    return False, (
        f"MNIST not found: expected the uncompressed idx files {', '.join(MNIST_RAW_FILES)} in "
        f"{raw} (missing: {', '.join(missing)}; e.g. {raw / MNIST_RAW_FILES[0]}). Pass "
        f"download=True (--download) to fetch them when online."
    )


def load_mnist(
    root: str | Path | None = None,
    *,
    resolution: int | None = None,
    seed: int = 0,
    download: bool = False,
) -> Split:
    """MNIST (60,000 train / 10,000 test handwritten digits, 28x28 grey), the official split.

    Args:
        root (str | Path | None): folder holding ``MNIST/raw/`` (the idx files); default
            :data:`DEFAULT_ROOT`.
        resolution (int | None): ``None`` (default) keeps 28x28; an int resizes bilinearly.
        seed (int): accepted for a uniform loader signature; the official split is fixed.
        download (bool): fetch the files through torchvision when missing (default ``False``).
    """
    del seed
    if resolution is not None:
        _check_resolution(resolution, "mnist")
    ok, why = _mnist_status(root)
    from torchvision.datasets import MNIST

    if not ok:
        if not download:
            raise DataUnavailable(why)
        _download("MNIST", lambda: MNIST(str(_data_root(root)), train=True, download=True), why)
        ok, why = _mnist_status(root)
        if not ok:
            raise DataUnavailable(why)
    parts = []
    for train in (True, False):
        try:
            ds = MNIST(str(_data_root(root)), train=train, download=False)
            x, y = torch.as_tensor(ds.data), torch.as_tensor(ds.targets, dtype=torch.int64)
        except (AssertionError, RuntimeError, TypeError, ValueError) as e:
            raise ValueError(
                f"MNIST files under {_data_root(root) / 'MNIST'} are invalid: {e}"
            ) from e
        if x.ndim != 3 or len(x) != len(y) or (len(y) and (y.min() < 0 or y.max() > 9)):
            raise ValueError(
                f"MNIST files under {_data_root(root) / 'MNIST'} are invalid: images "
                f"{tuple(x.shape)}, labels {tuple(y.shape)}"
            )
        parts.append((_uint8_to_float(x.unsqueeze(1)), y))
    size = parts[0][0].shape[-1] if resolution is None else int(resolution)
    info = DatasetInfo(
        name="mnist",
        num_classes=10,
        shape=(1, size, size),
        mean=MNIST_MEAN,
        std=MNIST_STD,
        natural=False,  # digits: no flips
        class_names=tuple(str(i) for i in range(10)),
        params={"resolution": size},
    )
    (x_train, y_train), (x_test, y_test) = parts
    return Split(
        ImageData(resize(x_train, size), y_train, info),
        ImageData(resize(x_test, size), y_test, info),
    )
