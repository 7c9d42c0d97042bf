"""What every attack shares: the base of the attack configs, :class:`Trigger` (a batched function
on images in pixel space), and the safe reading of trigger images (files or ``data:`` URIs, sizes
checked before decoding).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .._assets import asset_dir
from ..config import ParamConfig
from ..data import DatasetInfo, ImageData

DEFAULT_BLENDED_TRIGGER = asset_dir() / "blended_trigger.png"


# ------------------------------------------------------------------------------------ configs
class _Config(ParamConfig):
    """Base of the attack configs: ``attack`` (each config's registry name) labels messages;
    :meth:`validate` and :meth:`limits` take the data set's :class:`DatasetInfo`."""

    attack: ClassVar[str] = ""

    @property
    def label(self) -> str:  # type: ignore[override]
        return self.attack


MAX_TRIGGER_FILE = 1 << 20  # bytes of a trigger image file (a 32x32 PNG is a few hundred)
MAX_TRIGGER_URI = 512 << 10  # characters of a data: URI kept in a spec (sidecars are <= 1 MiB)
MAX_TRIGGER_SIDE = 1024  # pixels per side, checked before decoding (decompression bombs)
DATA_URI = "data:image/png;base64,"


# ----------------------------------------------------------------------------------- triggers
def batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int) -> Tensor:
    """``fn`` over ``x`` in batches of ``batch_size``, concatenated (an empty ``x`` gives a copy)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(x) == 0:
        return x.clone()
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


# Pieces an attack computes when it is planted (LF's pattern, Input-aware's generator) travel in
# its spec as safetensors in a data: URI, read without unpickling.
TENSORS_URI = "data:application/x-safetensors;base64,"


def tensors_uri(tensors: dict[str, Tensor]) -> str:
    """``tensors`` as a ``data:`` URI of safetensors (float32, CPU)."""
    import base64

    from safetensors.torch import save

    raw = save({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()})
    return TENSORS_URI + base64.b64encode(raw).decode("ascii")


def read_tensors_uri(uri: Any, what: str, made: str) -> dict[str, Tensor]:
    """The tensors in a :func:`tensors_uri`; ValueError naming ``what`` (the parameter) for
    anything else: not such a URI (``made`` says what SAU Lab makes there), too long, or not
    safetensors. Never unpickled."""
    import base64

    from safetensors import SafetensorError
    from safetensors.torch import load

    if not isinstance(uri, str) or not uri.startswith(TENSORS_URI):
        raise ValueError(f"{what} must be a {made} made by SAU Lab ({TENSORS_URI}...)")
    if len(uri) > MAX_TRIGGER_URI:
        raise ValueError(f"{what} is over {MAX_TRIGGER_URI >> 10} KiB")
    try:
        return load(base64.b64decode(uri[len(TENSORS_URI) :], validate=True))
    except (ValueError, SafetensorError) as err:
        raise ValueError(f"{what} cannot be read: {str(err)[:120]}") from None


class Trigger:
    """A backdoor trigger: a batched function on images in [0, 1], separate from the label rule.

    Call it on ``x`` of shape (B, C, H, W) matching ``info.shape``; it returns a new tensor of the
    same shape, dtype and device, in [0, 1], and never modifies ``x``. Tensors it holds live on
    the CPU in float32 and are moved to ``x``'s device and dtype inside the call.

    Attributes: ``name`` (registry name), ``clean_label`` (poison only target-class training
    images and keep their labels), ``has_cross`` and ``cross_ratio`` (WaNet's noise-mode cross
    samples per poisoned sample), ``config`` and ``info``.
    """

    name: str = ""
    clean_label: bool = False
    has_cross: bool = False
    per_image: bool = False  # a different trigger for every image (Input-aware)

    def __init__(self, config: Any, info: DatasetInfo) -> None:
        self.config = config
        self.info = info

    @property
    def cross_ratio(self) -> float:
        """Cross samples per poisoned sample (0 unless the trigger has cross samples)."""
        return 0.0

    def __call__(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if len(x) == 0:
            return x.clone()
        return self.apply(x)

    def apply(self, x: Tensor) -> Tensor:
        """The trigger itself on a checked, non-empty batch; subclasses implement it."""
        raise NotImplementedError

    def poison(
        self, x: Tensor, y: Tensor, train: ImageData, seed: int, batch_size: int = 1024
    ) -> Tensor:
        """The poisoned training images made from ``x`` (B, C, H, W), true labels ``y``: the
        trigger itself, in batches of ``batch_size``, for most attacks. ``train`` (the clean
        training set) and ``seed`` are for attacks that first transform the images with a model
        of their own (LC hardens them against a clean surrogate)."""
        return batched(self, x, batch_size)

    def cross_set(self, x: Tensor, generator: torch.Generator, batch_size: int = 1024) -> Tensor:
        """The cross samples of a whole set ``x``, made in batches of ``batch_size`` (the same
        images for any batch size: :meth:`cross` draws per image from ``generator``)."""
        return batched(lambda b: self.cross(b, generator), x, batch_size)

    def cross(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """WaNet-style "noise mode" cross samples of ``x`` (B, C, H, W), randomness from ``generator``."""
        raise NotImplementedError(f"the {self.name} trigger has no cross samples")

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.info.shape):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"the {self.name} trigger was built for images of shape (B, "
                f"{', '.join(map(str, self.info.shape))}), got {shape}"
            )
        if not x.is_floating_point():
            raise ValueError(f"the {self.name} trigger needs float images in [0, 1], got {x.dtype}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r}, shape={tuple(self.info.shape)})"


def _open_image(source: str, what: str, limit: int = MAX_TRIGGER_FILE, shown: str | None = None):
    """A Pillow image from a path or a ``data:`` URI, its size checked before decoding;
    ``shown`` is how messages call it (default: the file's name, or "the data: URI")."""
    import base64
    import binascii
    import io

    from PIL import Image, UnidentifiedImageError

    if source.startswith("data:"):
        head, _, payload = source.partition(",")
        if not head.endswith(";base64") or not payload:
            raise ValueError(f"{what}: a data: URI must be base64 (data:image/png;base64,...)")
        if len(payload) > 4 * limit // 3 + 4:
            raise ValueError(f"{what}: the image is over {limit >> 10} KiB")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{what}: the data: URI is not valid base64") from None
        name = shown or "the data: URI"
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            hint = (
                " (regenerate it with assets/make_blended_trigger.py)"
                if path == DEFAULT_BLENDED_TRIGGER
                else ""
            )
            raise ValueError(f"{what}: trigger image not found: {path}{hint}")
        if path.stat().st_size > limit:
            raise ValueError(f"{what}: {path.name} is over {limit >> 10} KiB")
        raw = path.read_bytes()
        name = shown or path.name
    try:
        img = Image.open(io.BytesIO(raw))
        w, h = img.size
        if not (1 <= w <= MAX_TRIGGER_SIDE and 1 <= h <= MAX_TRIGGER_SIDE):
            raise ValueError(f"{w}x{h} pixels; at most {MAX_TRIGGER_SIDE} per side")
        img.load()
    except UnidentifiedImageError:
        raise ValueError(f"{what}: {name} is not an image Pillow can read (give a PNG)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{what}: cannot read {name} as an image: {e}") from None
    return img


def _to_tensor(img, mode: str, info: DatasetInfo, resample) -> Tensor:
    """A Pillow image as float32 (C, H, W) in [0, 1] in ``mode`` ("L" or "RGB"), resized."""
    _, height, width = info.shape
    img = img.convert(mode)
    if img.size != (width, height):
        img = img.resize((width, height), resample)
    array = np.asarray(img, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # (C, H, W)


def _channels_mode(info: DatasetInfo, what: str) -> str:
    channels = info.shape[0]
    if channels not in (1, 3):
        raise ValueError(
            f"{what}: image triggers need 1 or 3 channels, the data set has {channels}"
        )
    return "L" if channels == 1 else "RGB"


def _load_image(path: Path, info: DatasetInfo) -> Tensor:
    """An image file as a float32 tensor (C, H, W) in [0, 1] for ``info``'s channels and size."""
    from PIL import Image

    mode = _channels_mode(info, "blended")
    img = _open_image(str(path), "blended", limit=64 << 20)
    return _to_tensor(img, mode, info, Image.Resampling.BILINEAR)


def trigger_uri(data: bytes, name: str = "the file") -> str:
    """A trigger image file's bytes (PNG, or any format Pillow reads) as a PNG ``data:`` URI, so
    an :class:`AttackSpec` carries the trigger itself and stays valid wherever it is copied.
    ValueError naming ``name`` for a file that is not an image, too large or too many pixels."""
    import base64
    import io

    if len(data) > MAX_TRIGGER_FILE:
        raise ValueError(f"{name} is {len(data) >> 10} KiB; a trigger image must be under "
                         f"{MAX_TRIGGER_FILE >> 10} KiB")  # fmt: skip
    img = _open_image(DATA_URI + base64.b64encode(data).decode("ascii"), "trigger image",
                      shown=name)  # fmt: skip
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    uri = DATA_URI + base64.b64encode(buf.getvalue()).decode("ascii")
    if len(uri) > MAX_TRIGGER_URI:
        raise ValueError(f"{name} is too large to carry with the model ({img.size[0]}x"
                         f"{img.size[1]} pixels); save it at the data's image size")  # fmt: skip
    return uri
