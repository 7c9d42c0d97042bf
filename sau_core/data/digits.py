"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 images, no network; optionally
upsampled to 16x16 or 32x32, with a seeded stratified split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .core import DatasetInfo, ImageData, Split, _stats, resize

# --------------------------------------------------------------------------------------- digits
DIGITS_RESOLUTIONS = (8, 16, 32)


def load_digits(
    root: str | Path | None = None,
    *,
    resolution: int = 8,
    test_ratio: float = 0.25,
    seed: int = 0,
    download: bool = False,
) -> Split:
    """scikit-learn's handwritten digits (1,797 images, 8x8, 17 grey levels), stratified split.

    ``resolution`` upsamples the native 8x8 images bilinearly to 16x16 or 32x32. The split is a
    seeded stratified shuffle, so the same ``seed`` always gives the same train and test sets.
    """
    from sklearn.datasets import load_digits as _sk_digits
    from sklearn.model_selection import train_test_split

    if resolution not in DIGITS_RESOLUTIONS:
        raise ValueError(f"digits resolution must be one of {DIGITS_RESOLUTIONS}, got {resolution}")
    if not 0.0 < test_ratio < 1.0:
        raise ValueError(f"test_ratio must be in (0, 1), got {test_ratio}")
    bunch = _sk_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=test_ratio, random_state=seed, stratify=bunch.target
    )
    x = resize(x, resolution)
    mean, std = _stats(x[idx_train])
    info = DatasetInfo(
        name="digits",
        num_classes=10,
        shape=(1, resolution, resolution),
        mean=mean,
        std=std,
        natural=False,
        class_names=tuple(str(i) for i in range(10)),
        params={"resolution": resolution},
    )
    t_train, t_test = torch.from_numpy(idx_train), torch.from_numpy(idx_test)
    return Split(ImageData(x[t_train], y[t_train], info), ImageData(x[t_test], y[t_test], info))
