"""A user's own images, one sub-folder per class (optionally train/ and test/ folders)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .core import DatasetInfo, DataUnavailable, ImageData, Split, _stats
from .safe_io import IMAGE_EXTENSIONS, _check_resolution, _load_all, _read_image


# --------------------------------------------------------------------------------- imagefolder
def _class_folders(folder: Path) -> list[str]:
    """Sorted names of the visible sub-folders (hidden ones such as ``.ipynb_checkpoints`` are skipped)."""
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _is_image_file(path: str) -> bool:
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _imagefolder_layout(root: str | Path | None) -> tuple[Path, bool]:
    """(the folder, whether it holds ``train/`` and ``test/``); raises when it cannot be used."""
    if root is None:
        raise ValueError(
            "imagefolder needs a root: a folder with one sub-folder of images per class"
        )
    folder = Path(root).expanduser().absolute()
    if not folder.is_dir():
        raise DataUnavailable(
            f"image folder {folder} not found: put your images in {folder}/<class name>/ (one "
            f"sub-folder per class), or in {folder}/train/<class name>/ and "
            f"{folder}/test/<class name>/ for a fixed split"
        )
    return folder, (folder / "train").is_dir() and (folder / "test").is_dir()


def _imagefolder_status(root: str | Path | None) -> tuple[bool, str]:
    try:
        folder, has_split = _imagefolder_layout(root)
    except (ValueError, DataUnavailable) as e:
        return False, str(e)
    where = folder / "train" if has_split else folder
    classes = _class_folders(where)
    if len(classes) < 2:
        return False, (
            f"image folder {where} needs at least 2 class sub-folders, found {len(classes)}"
        )
    return True, f"{len(classes)} classes in {folder}" + (
        " (train/ and test/)" if has_split else ""
    )


def _read_image_folder(
    folder: Path, classes: Sequence[str], resolution: int, channels: int
) -> tuple[Tensor, Tensor]:
    """Every image under ``folder/<class>/`` for the given classes, via torchvision's ImageFolder."""
    from torchvision.datasets import ImageFolder

    class _Folder(ImageFolder):
        def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
            return list(classes), {c: i for i, c in enumerate(classes)}

    ds = _Folder(
        str(folder),
        loader=lambda path: _read_image(path, resolution, channels),
        is_valid_file=_is_image_file,
        allow_empty=True,
    )
    counts = np.bincount(np.asarray(ds.targets, dtype=np.int64), minlength=len(classes))
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise ValueError(
            f"no images for class(es) {', '.join(empty)} in {folder} (supported: "
            f"{', '.join(IMAGE_EXTENSIONS)})"
        )
    return _load_all(ds.__getitem__, len(ds))


def load_imagefolder(
    root: str | Path | None = None,
    *,
    resolution: int = 32,
    channels: int = 3,
    test_ratio: float = 0.2,
    seed: int = 0,
    download: bool = False,
) -> Split:
    """A user's own images: ``root/<class name>/*.png`` (jpg, ppm, bmp, tif, webp also work).

    When ``root`` holds both ``train/`` and ``test/`` (each with the same class folders) they are
    the split; otherwise the images are split by a seeded stratified shuffle. Class indices
    follow the sorted folder names; hidden folders and files are ignored.

    Args:
        root (str | Path): the folder; required.
        resolution (int): every image is resized to this square, default 32.
        channels (int): 3 (RGB, default) or 1 (greyscale).
        test_ratio (float): share of each class held out for testing, default 0.2 (ignored with
            ``train/`` and ``test/``).
        seed (int): seed of that split, default 0.
        download (bool): accepted for a uniform loader signature; there is nothing to fetch.

    Raises:
        DataUnavailable: the folder does not exist.
        ValueError: fewer than 2 classes, a class without images, train and test classes that
            differ, a class too small to split, or an unreadable image (named in the message).
    """
    del download
    from sklearn.model_selection import train_test_split

    _check_resolution(resolution, "imagefolder")
    if channels not in (1, 3):
        raise ValueError(f"imagefolder channels must be 1 or 3, got {channels!r}")
    if not 0.0 < test_ratio < 1.0:
        raise ValueError(f"test_ratio must be in (0, 1), got {test_ratio}")
    folder, has_split = _imagefolder_layout(root)
    classes = _class_folders(folder / "train" if has_split else folder)
    if len(classes) < 2:
        raise ValueError(
            f"image folder {folder / 'train' if has_split else folder} needs at least 2 class "
            f"sub-folders (one per class), found {len(classes)}: {classes}"
        )
    params: dict[str, Any] = {"resolution": int(resolution), "channels": channels}
    if has_split:
        test_classes = _class_folders(folder / "test")
        if test_classes != classes:
            only_train = sorted(set(classes) - set(test_classes))
            only_test = sorted(set(test_classes) - set(classes))
            raise ValueError(
                f"{folder}/train and {folder}/test must hold the same class folders; only in "
                f"train: {only_train}, only in test: {only_test}"
            )
        x_train, y_train = _read_image_folder(folder / "train", classes, resolution, channels)
        x_test, y_test = _read_image_folder(folder / "test", classes, resolution, channels)
    else:
        x, y = _read_image_folder(folder, classes, resolution, channels)
        counts = torch.bincount(y, minlength=len(classes))
        small = [c for c, n in zip(classes, counts.tolist(), strict=True) if n < 2]
        if small:
            raise ValueError(
                f"class(es) {', '.join(small)} in {folder} have fewer than 2 images; a "
                f"stratified train/test split needs at least 2 per class"
            )
        try:
            idx_train, idx_test = train_test_split(
                np.arange(len(y)), test_size=test_ratio, random_state=seed, stratify=y.numpy()
            )
        except ValueError as e:
            raise ValueError(
                f"cannot split the {len(y)} images of {folder} with test_ratio={test_ratio}: {e}"
            ) from e
        t_train, t_test = torch.from_numpy(idx_train), torch.from_numpy(idx_test)
        x_train, y_train, x_test, y_test = x[t_train], y[t_train], x[t_test], y[t_test]
        params.update(test_ratio=test_ratio, seed=seed)
    mean, std = _stats(x_train)
    info = DatasetInfo(
        name="imagefolder",
        num_classes=len(classes),
        shape=(channels, int(resolution), int(resolution)),
        mean=mean,
        std=std,
        natural=True,
        class_names=tuple(classes),
        params=params,
    )
    return Split(ImageData(x_train, y_train, info), ImageData(x_test, y_test, info))
