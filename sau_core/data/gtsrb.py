"""GTSRB (German traffic signs, 43 classes) from its official folders and CSV files."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from .core import DatasetInfo, DataUnavailable, ImageData, Split, _stats
from .safe_io import _check_resolution, _data_root, _download, _load_all, _pil_to_array

# --------------------------------------------------------------------------------------- gtsrb
GTSRB_CLASSES = 43


def _gtsrb_paths(root: str | Path | None) -> tuple[Path, Path, Path]:
    """(training folder, test image folder, test label csv), as torchvision's GTSRB expects."""
    base = _data_root(root) / "gtsrb"
    return (
        base / "GTSRB" / "Training",
        base / "GTSRB" / "Final_Test" / "Images",
        base / "GT-final_test.csv",
    )


def _gtsrb_status(root: str | Path | None) -> tuple[bool, str]:
    train, test, labels = _gtsrb_paths(root)
    missing_classes = [
        f"{c:05d}" for c in range(GTSRB_CLASSES) if not (train / f"{c:05d}").is_dir()
    ]
    missing = []
    if missing_classes:
        missing.append(f"{len(missing_classes)} of the 43 class folders in {train}")
    if not test.is_dir():
        missing.append(str(test))
    if not labels.is_file():
        missing.append(str(labels))
    if not missing:
        return True, f"GTSRB found in {train.parent.parent}"
    return False, (
        f"GTSRB not found: expected the training images in {train}/00000 ... /00042 (*.ppm, "
        f"from GTSRB-Training_fixed.zip), the test images in {test} (GTSRB_Final_Test_Images.zip) "
        f"and the test labels {labels} (GTSRB_Final_Test_GT.zip); missing: {'; '.join(missing)}. "
        f"Pass download=True (--download) to fetch them when online."
    )


def load_gtsrb(
    root: str | Path | None = None,
    *,
    resolution: int = 32,
    seed: int = 0,
    download: bool = False,
) -> Split:
    """GTSRB (39,209 train / 12,630 test traffic-sign photos, 43 classes), the official split.

    Args:
        root (str | Path | None): folder holding ``gtsrb/`` in torchvision's layout; default
            :data:`DEFAULT_ROOT`.
        resolution (int): every image (they vary in size) is resized to this square, default 32.
        seed (int): accepted for a uniform loader signature; the official split is fixed.
        download (bool): fetch the three archives through torchvision when missing (default
            ``False``).

    Labels come from the class folder for training images (torchvision indexes the sorted
    folders ``00000`` ... ``00042``, which is why all 43 must exist) and from
    ``GT-final_test.csv`` for test images. ``mean`` and ``std`` are measured on the train set.
    """
    del seed
    _check_resolution(resolution, "gtsrb")
    ok, why = _gtsrb_status(root)
    from torchvision.datasets import GTSRB

    if not ok:
        if not download:
            raise DataUnavailable(why)

        def fetch() -> None:
            for split in ("train", "test"):
                GTSRB(str(_data_root(root)), split=split, download=True)

        _download("GTSRB", fetch, why)
        ok, why = _gtsrb_status(root)
        if not ok:
            raise DataUnavailable(why)

    def to_array(img: Any) -> np.ndarray:
        return _pil_to_array(img, int(resolution), 3)

    parts = []
    for split in ("train", "test"):
        try:
            ds = GTSRB(str(_data_root(root)), split=split, transform=to_array)
        except (OSError, RuntimeError, KeyError, ValueError, csv.Error) as e:
            raise ValueError(f"GTSRB {split} files under {_data_root(root) / 'gtsrb'}: {e}") from e
        x, y = _load_all(ds.__getitem__, len(ds))
        if y.min() < 0 or y.max() >= GTSRB_CLASSES:
            raise ValueError(f"GTSRB {split} labels must be in [0, {GTSRB_CLASSES - 1}]")
        parts.append((x, y))
    (x_train, y_train), (x_test, y_test) = parts
    mean, std = _stats(x_train)
    info = DatasetInfo(
        name="gtsrb",
        num_classes=GTSRB_CLASSES,
        shape=(3, int(resolution), int(resolution)),
        mean=mean,
        std=std,
        # Photos, so natural=True (random crops help), but traffic signs must NOT be flipped
        # horizontally: a flip turns "keep left" into "keep right". Augmentation handles that.
        natural=True,
        class_names=tuple(f"{c:05d}" for c in range(GTSRB_CLASSES)),
        params={"resolution": int(resolution)},
    )
    return Split(ImageData(x_train, y_train, info), ImageData(x_test, y_test, info))
