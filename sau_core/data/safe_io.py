"""Reading untrusted files defensively: the data root, images with a pixel-count limit (decompression
bombs), and a restricted unpickler that only rebuilds numpy arrays (CIFAR-10's batches).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .core import DataUnavailable

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
