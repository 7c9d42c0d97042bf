"""The registered data sets by name: load one, check its options, say whether its files are present."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cifar10 import _cifar10_status, load_cifar10
from .core import Split
from .digits import load_digits
from .gtsrb import _gtsrb_status, load_gtsrb
from .imagefolder import _imagefolder_status, load_imagefolder
from .mnist import _mnist_status, load_mnist

# ------------------------------------------------------------------------------------- registry
Loader = Callable[..., Split]
DATASETS: dict[str, Loader] = {
    "digits": load_digits,
    "cifar10": load_cifar10,
    "mnist": load_mnist,
    "gtsrb": load_gtsrb,
    "imagefolder": load_imagefolder,
}

# name -> (root -> (present, reason)), for :func:`available`; a data set without one is assumed
# present (its loader raises DataUnavailable itself).
_FILE_CHECKS: dict[str, Callable[[str | Path | None], tuple[bool, str]]] = {
    "digits": lambda root: (True, "bundled with scikit-learn; always available"),
    "cifar10": _cifar10_status,
    "mnist": _mnist_status,
    "gtsrb": _gtsrb_status,
    "imagefolder": _imagefolder_status,
}


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def load_dataset(name: str, root: str | Path | None = None, **kwargs) -> Split:
    """Load a registered data set by name; ``kwargs`` go to its loader (``resolution``, ``download``...)."""
    try:
        loader = DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown data set {name!r}; choose from {', '.join(list_datasets())}"
        ) from None
    return loader(root, **kwargs)


def dataset_options(name: str, options: Any) -> dict[str, int | float]:
    """``options`` checked as loader arguments of data set ``name`` (from a sidecar, a job or a
    link): a dict whose keys the loader takes (never ``download``, never a path) and whose
    values are numbers. ValueError with a clear message otherwise."""
    import inspect

    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from {', '.join(list_datasets())}")
    if not isinstance(options, dict):
        raise ValueError(f"the options of data set {name!r} must be a dict, got {type(options).__name__}")  # fmt: skip
    params = inspect.signature(DATASETS[name]).parameters
    allowed = sorted(p for p, v in params.items() if v.kind is v.KEYWORD_ONLY and p != "download")
    unknown = sorted(str(k) for k in options if k not in allowed)
    if unknown:
        raise ValueError(f"data set {name!r} takes the options {', '.join(allowed)}; "
                         f"{', '.join(map(repr, unknown))} is not one of them")  # fmt: skip
    for key, value in options.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"data set option {key!r} must be a number, got {value!r}")
    return dict(options)


def available(name: str, root: str | Path | None = None) -> tuple[bool, str]:
    """Whether a registered data set's files are present under ``root``, without loading them.

    Args:
        name (str): a key of :data:`DATASETS`.
        root (str | Path | None): the data root (for ``imagefolder``, the image folder itself);
            default :data:`DEFAULT_ROOT`.

    Returns:
        ``(True, where they were found)`` or ``(False, what is missing and where it must go)``.
        Only the presence of the expected files and folders is checked, not their contents.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from {', '.join(list_datasets())}")
    check = _FILE_CHECKS.get(name)
    return (True, "") if check is None else check(root)


@dataclass(frozen=True)
class DataSpec:
    """How to load a data set again: its name, root and loader arguments (JSON-able)."""

    name: str = "digits"
    root: str | None = None
    kwargs: dict = field(default_factory=dict)  # e.g. {"resolution": 16, "seed": 0}

    def load(self, download: bool = False) -> Split:
        kwargs = dict(self.kwargs)
        if download:
            kwargs["download"] = True
        try:
            return load_dataset(self.name, self.root, **kwargs)
        except TypeError as err:  # an option of the wrong kind: a message, not a traceback
            raise ValueError(f"data set {self.name!r} cannot take the options {self.kwargs}: "
                             f"{err}") from None  # fmt: skip

    def to_dict(self) -> dict:
        return {"name": self.name, "root": self.root, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        """Inverse of :meth:`to_dict`; the options are checked against the data set's loader
        (:func:`~sau_core.data.dataset_options`): ValueError for anything else."""
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise ValueError("a data block needs at least a 'name' (text)")
        root = d.get("root")
        if root is not None and not isinstance(root, str):
            raise ValueError(f"a data block's 'root' must be a folder name, got {root!r}")
        return cls(d["name"], root, dataset_options(d["name"], d.get("kwargs", {})))
