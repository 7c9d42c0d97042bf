"""The data's types: :class:`DatasetInfo` (geometry and normalisation), :class:`ImageData` (resident
tensors in [0, 1]), :class:`Split`, and the defender's clean subset (:func:`clean_subset`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


class DataUnavailable(RuntimeError):
    """A data set's files are missing and cannot be downloaded; the message says where they go."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and an attack need to know about a data set."""

    name: str
    num_classes: int
    shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]  # per channel, used by the model's normalisation layer
    std: tuple[float, ...]
    natural: bool = True  # natural photos: random crop + flip augmentation while training
    class_names: tuple[str, ...] = ()
    params: dict = field(default_factory=dict, compare=False)  # e.g. {"resolution": 16}

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return self.shape[1]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "shape": list(self.shape),
            "mean": list(self.mean),
            "std": list(self.std),
            "natural": self.natural,
            "class_names": list(self.class_names),
            "params": dict(self.params),
        }

    @classmethod
    def from_dict(cls, d: dict) -> DatasetInfo:
        return cls(
            name=str(d["name"]),
            num_classes=int(d["num_classes"]),
            shape=tuple(int(s) for s in d["shape"]),
            mean=tuple(float(m) for m in d["mean"]),
            std=tuple(float(s) for s in d["std"]),
            natural=bool(d.get("natural", True)),
            class_names=tuple(str(c) for c in d.get("class_names", ())),
            params=dict(d.get("params", {})),
        )


@dataclass
class ImageData:
    """A resident labelled image set: ``x`` (N, C, H, W) float32 in [0, 1], ``y`` (N,) int64."""

    x: Tensor
    y: Tensor
    info: DatasetInfo

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise ValueError(
                f"ImageData needs x of shape (N, C, H, W) and y of shape (N,), got "
                f"{tuple(self.x.shape)} and {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: Tensor | np.ndarray | list[int]) -> ImageData:
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageData(self.x[index], self.y[index], self.info)

    def to(self, device: torch.device | str) -> ImageData:
        return ImageData(self.x.to(device), self.y.to(device), self.info)


@dataclass
class Split:
    train: ImageData
    test: ImageData

    @property
    def info(self) -> DatasetInfo:
        return self.train.info


def _stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


def resize(x: Tensor, size: int) -> Tensor:
    """Resize a batch (N, C, H, W) to ``size`` x ``size`` with bilinear interpolation, kept in [0, 1]."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)


# --------------------------------------------------------------------------- the defender's set
def clean_subset(
    train: ImageData,
    ratio: float = 0.05,
    *,
    seed: int = 0,
    balanced: bool = False,
    exclude: Tensor | None = None,
) -> Tensor:
    """Indices of the defender's clean set: ``ratio`` of the training set, drawn with ``seed``.

    Drawn from the *un-poisoned* training data (true labels, no trigger), as the reference does.
    ``exclude`` removes indices (say, the poisoned ones) from the candidates. With ``balanced``
    the count is split evenly over classes (as far as each class has samples).
    """
    n = len(train)
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"clean ratio must be in (0, 1], got {ratio}")
    k = max(1, round(ratio * n))
    g = torch.Generator().manual_seed(seed)
    candidates = torch.ones(n, dtype=torch.bool)
    if exclude is not None and len(exclude):
        candidates[torch.as_tensor(exclude, dtype=torch.long)] = False
    pool = candidates.nonzero().squeeze(1)
    if not balanced:
        perm = pool[torch.randperm(len(pool), generator=g)]
        return perm[:k].sort().values
    y = train.y[pool]
    classes = y.unique()
    per_class = k // len(classes)
    extra = k - per_class * len(classes)
    chosen = []
    for i, c in enumerate(classes.tolist()):
        members = pool[y == c]
        members = members[torch.randperm(len(members), generator=g)]
        chosen.append(members[: per_class + (1 if i < extra else 0)])
    return torch.cat(chosen).sort().values


def with_info(data: ImageData, **changes) -> ImageData:
    return ImageData(data.x, data.y, replace(data.info, **changes))
