"""Data sets as resident tensors in [0, 1], and the defender's clean subset.

Every loader returns a :class:`Split` of two :class:`ImageData` (train, test) sharing one
:class:`DatasetInfo`. Registered data sets live in :data:`DATASETS`; adding one is one entry.

- ``digits``: scikit-learn's bundled handwritten digits (1,797 real 8x8 images, no network),
  optionally upsampled (``resolution`` 8, 16 or 32), with a seeded stratified split.
- ``cifar10``, ``gtsrb``, ``mnist``: the official files, from a data root (default ``data/``);
  ``download=True`` fetches them through torchvision when online.
- ``imagefolder``: a user's own images, one sub-folder per class.

:func:`available` says, without loading anything, whether a data set's files are present and,
when not, where they must go. Untrusted files are read defensively: CIFAR-10's pickles with a
restricted unpickler that only rebuilds numpy arrays, user images with a pixel-count limit.
"""

from __future__ import annotations

import csv
import os
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DATASETS",
    "DEFAULT_ROOT",
    "DataUnavailable",
    "DatasetInfo",
    "ImageData",
    "Split",
    "available",
    "clean_subset",
    "dataset_options",
    "list_datasets",
    "load_dataset",
]


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


# ------------------------------------------------------------------------------ shared helpers
DEFAULT_ROOT = Path("data")  # where the file-based data sets live when no root is given
MAX_RESOLUTION = 256  # resident float32 tensors: 60,000 CIFAR images at 256x256 are already 47 GB
MAX_IMAGE_PIXELS = 40_000_000  # refuse larger images before decoding (decompression bombs)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")


def _data_root(root: str | Path | None) -> Path:
    """``root`` as an absolute path, :data:`DEFAULT_ROOT` when ``None``."""
    return Path(DEFAULT_ROOT if root is None else root).expanduser().absolute()


def _check_resolution(resolution: Any, name: str) -> None:
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, (int, np.integer))
        or not 1 <= resolution <= MAX_RESOLUTION
    ):
        raise ValueError(
            f"{name} resolution must be an integer in [1, {MAX_RESOLUTION}], got {resolution!r}"
        )


def _uint8_to_float(x: np.ndarray | Tensor) -> Tensor:
    """uint8 images (N, C, H, W) to float32 in [0, 1]."""
    x = torch.as_tensor(x)
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {x.dtype}")
    return x.to(torch.float32).div_(255.0)


def _download(label: str, fetch: Callable[[], object], where: str) -> None:
    """Run ``fetch`` (a torchvision download); any failure becomes :class:`DataUnavailable`."""
    try:
        fetch()
    except Exception as e:  # network, checksum and archive errors alike
        raise DataUnavailable(
            f"downloading {label} failed ({type(e).__name__}: {e}). {where}"
        ) from e


def _pil_to_array(img: Any, resolution: int, channels: int) -> np.ndarray:
    """A PIL image as a uint8 array (resolution, resolution, channels), resized bilinearly."""
    from PIL import Image

    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _read_image(path: str | Path, resolution: int, channels: int) -> np.ndarray:
    """Read one untrusted image file safely; any problem is a ValueError naming the file.

    The pixel count is checked from the header, before anything is decoded, against
    :data:`MAX_IMAGE_PIXELS` (whatever ``PIL.Image.MAX_IMAGE_PIXELS`` happens to be set to).
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ValueError(
                    f"{width}x{height} pixels is more than the limit of {MAX_IMAGE_PIXELS:,}"
                )
            return _pil_to_array(img, resolution, channels)
    except Exception as e:  # unreadable, truncated, not an image, too big: all the same to us
        raise ValueError(f"cannot read image {path}: {e}") from e


def _load_all(get: Callable[[int], tuple[np.ndarray, int]], n: int) -> tuple[Tensor, Tensor]:
    """Call ``get(i)`` for every index (in threads: PIL decodes without the GIL), stack the results."""
    if n == 0:
        raise ValueError("no images to load")
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        items = list(pool.map(get, range(n)))
    x = np.stack([arr for arr, _ in items]).transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    y = torch.tensor([int(label) for _, label in items], dtype=torch.int64)
    return _uint8_to_float(np.ascontiguousarray(x)), y


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


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode`` (how protocol-2 pickles written by Python 3 store bytes)."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _safe_pickle_globals() -> dict[tuple[str, str], Any]:
    """The only globals a data pickle may name: what rebuilding a numpy array takes."""
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
        from numpy.core.numeric import _frombuffer
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core", "numpy._core"):  # files written under numpy 1.x and 2.x
        allowed[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = _frombuffer  # pickle protocol 5
    return allowed


class SafeUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` that rebuilds plain data and numpy arrays, and nothing else.

    ``find_class`` answers only numpy's array and dtype constructors (under both the
    ``numpy.core`` and ``numpy._core`` module paths) and a latin-1-only ``_codecs.encode``;
    any other global (``os.system``, ``builtins.eval``...) raises
    :class:`pickle.UnpicklingError` before it can be called.
    """

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if SafeUnpickler._allowed is None:
            SafeUnpickler._allowed = _safe_pickle_globals()
        try:
            return SafeUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: data files may only contain numpy arrays"
            ) from None


def safe_pickle_load(path: str | Path, encoding: str = "latin1") -> Any:
    """Unpickle a data file with :class:`SafeUnpickler`.

    ``encoding`` (default ``"latin1"``) decodes Python 2 strings, as the official CIFAR files
    need; ``"bytes"`` keeps them as bytes.
    """
    with open(path, "rb") as f:
        return SafeUnpickler(f, encoding=encoding).load()


def _load_data_pickle(path: Path) -> Any:
    """:func:`safe_pickle_load` with every failure (refused global, torn or garbage file) a ValueError."""
    try:
        return safe_pickle_load(path)
    except (OSError, MemoryError):
        raise
    except Exception as err:  # UnpicklingError, EOFError, and whatever a garbage stream raises
        raise ValueError(
            f"{path} is not a readable data file: {type(err).__name__}: {err}"
        ) from None


def _str_keys(entry: Any, path: Path) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ValueError(
            f"{path} is not a CIFAR-10 file: expected a dict, got {type(entry).__name__}"
        )
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in entry.items()}


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
