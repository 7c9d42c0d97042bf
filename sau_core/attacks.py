"""Backdoor attacks: triggers, label rules and the poisoning of data sets.

An attack is two separate things:

- a :class:`Trigger`, a batched, device-agnostic function on images in pixel space
  (``(B, C, H, W)`` float in [0, 1] -> a new tensor of the same shape, dtype and device), built
  from a frozen config dataclass and a :class:`~sau_core.data.DatasetInfo`;
- a label rule (:func:`target_labels`): ``all2one`` sends every poisoned image to ``target``,
  ``all2all`` sends class ``y`` to ``(y + 1) mod K``.

:class:`AttackSpec` holds everything that defines one poisoning (attack name, config overrides,
target, rule, ratio, seed) and is JSON-serialisable. :func:`poison_train` makes the poisoned
training set and :func:`backdoor_test` the triggered test set for the attack success rate (ASR)
and the robust accuracy (RA).

Registered attacks (:data:`ATTACKS`; adding one is one new entry):

- ``badnets``: a small pixel patch stamped on the image (Gu et al., 2017, arXiv 1708.06733).
- ``blended``: a key image alpha-blended into the image (Chen et al., 2017, arXiv 1712.05526).
- ``sig``: a horizontal sinusoid added to target-class images, labels kept, i.e. clean-label
  (Barni et al., ICIP 2019, arXiv 1902.11237).
- ``wanet``: a fixed smooth warping field (Nguyen & Tran, ICLR 2021, arXiv 2102.10369), with
  "noise mode" cross samples that teach the model to ignore other warps.
- ``custom``: your own trigger, an image and a mask (PNG files or ``data:`` URIs), stamped or
  blended where the mask says: ``(1 - alpha m) x + alpha m image``.

Each config field carries ``metadata`` for forms: ``help`` (text), and where they apply ``min``,
``max`` (inclusive), ``exclusive_min`` (``min`` itself not allowed) and ``choices``. Bounds that
depend on the image size (BadNets' ``size``, ...) come from the config's ``limits(info)``;
:func:`param_schema` resolves both for one data set.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ._assets import asset_dir
from ._config import ParamConfig, config_from, config_schema, param
from .data import DatasetInfo, ImageData

__all__ = [
    "ATTACKS",
    "DEFAULT_BLENDED_TRIGGER",
    "LABEL_RULES",
    "AttackEntry",
    "AttackSpec",
    "BackdoorTest",
    "BadNetsConfig",
    "BadNetsTrigger",
    "BlendedConfig",
    "BlendedTrigger",
    "CustomConfig",
    "CustomTrigger",
    "PoisonedTrain",
    "SIGConfig",
    "SIGTrigger",
    "Trigger",
    "WaNetConfig",
    "WaNetTrigger",
    "backdoor_test",
    "create_trigger",
    "example_params",
    "list_attacks",
    "make_config",
    "param_schema",
    "path_params",
    "poison_indices",
    "poison_train",
    "target_labels",
    "trigger_uri",
]

DEFAULT_BLENDED_TRIGGER = asset_dir() / "blended_trigger.png"
LABEL_RULES = ("all2one", "all2all")


# ------------------------------------------------------------------------------------ configs
class _Config(ParamConfig):
    """Base of the attack configs: ``attack`` (each config's registry name) labels messages;
    :meth:`validate` and :meth:`limits` take the data set's :class:`DatasetInfo`."""

    attack: ClassVar[str] = ""

    @property
    def label(self) -> str:  # type: ignore[override]
        return self.attack


BADNETS_LOCATIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")
BADNETS_PATTERNS = ("white", "black", "checker")


@dataclass(frozen=True)
class BadNetsConfig(_Config):
    """BadNets (Gu et al., 2017): a ``size`` x ``size`` patch stamped at a corner or the centre."""

    attack: ClassVar[str] = "badnets"

    # side of the square patch in pixels (3 in the paper's 3x3 white square); at most min(H, W)
    size: int = param(
        3, "Side of the square trigger patch, in pixels (at most the image size).", min=1
    )
    # where the patch goes; corners are flush with the image border
    location: str = param(
        "bottom-right", "Where the patch is stamped.", choices=list(BADNETS_LOCATIONS)
    )
    # patch content: all 1 (white), all 0 (black), or a 1/0 checkerboard starting with 1 top-left
    pattern: str = param(
        "white",
        "Patch content: white (1), black (0) or a white/black checkerboard.",
        choices=list(BADNETS_PATTERNS),
    )

    @classmethod
    def limits(cls, info: DatasetInfo) -> dict[str, dict[str, Any]]:
        return {"size": {"max": min(info.shape[1:])}}


@dataclass(frozen=True)
class BlendedConfig(_Config):
    """Blended (Chen et al., 2017): ``(1 - alpha) * x + alpha * key``."""

    attack: ClassVar[str] = "blended"

    # blend weight of the key image; 0.2 is the common training setting
    alpha: float = param(
        0.2,
        "Blend weight of the trigger image: 0 keeps the image, 1 replaces it.",
        min=0.0,
        max=1.0,
        exclusive_min=True,
    )
    # "" = the shipped assets/blended_trigger.png; else a path to any image (converted to the
    # data set's channels, L or RGB, and resized to H x W)
    image: str = param(
        "",
        "Path to the trigger image (any format Pillow reads); empty for SAU Lab's default "
        "coloured-noise pattern. Converted to grey or RGB and resized to the image size.",
        path=True,
    )


@dataclass(frozen=True)
class SIGConfig(_Config):
    """SIG (Barni et al., 2019): ``x + delta * sin(2 pi j freq / W)`` over columns ``j``, clean-label."""

    attack: ClassVar[str] = "sig"

    # amplitude of the sinusoid in pixel units ([0, 1] scale); 40/255 as commonly used
    delta: float = param(
        40 / 255,
        "Amplitude of the sinusoid on the [0, 1] pixel scale.",
        min=0.0,
        max=1.0,
        exclusive_min=True,
    )
    # number of periods across the image width (6 in the paper); frequencies above W/2 alias
    freq: int = param(
        6,
        "Periods of the sinusoid across the image width (at most W; above W/2 it aliases).",
        min=1,
    )

    @classmethod
    def limits(cls, info: DatasetInfo) -> dict[str, dict[str, Any]]:
        return {"freq": {"max": info.shape[2]}}

    def check(self, info: DatasetInfo) -> None:
        width = info.shape[2]
        if _sinusoid(width, self.freq).abs().max() < 1e-6:
            raise ValueError(
                f"sig parameter 'freq' = {self.freq} samples the sinusoid only at its zeros on "
                f"an image {width} pixels wide (2 * freq / W is an integer); choose another"
            )


@dataclass(frozen=True)
class WaNetConfig(_Config):
    """WaNet (Nguyen & Tran, 2021): a fixed smooth warp; defaults are the paper's."""

    attack: ClassVar[str] = "wanet"

    # control grid size: the random field is k x k before bicubic upsampling
    k: int = param(4, "Size k of the k x k random control grid of the warp.", min=2)
    # warping strength: offsets are s * field / H in grid_sample's [-1, 1] coordinates
    s: float = param(0.5, "Warping strength s (0 is the identity).", min=0.0, max=10.0)
    # the warped grid is multiplied by this before clamping (1 in the paper)
    grid_rescale: float = param(
        1.0,
        "Factor applied to the warped grid before clamping to the image.",
        min=0.0,
        max=2.0,
        exclusive_min=True,
    )
    # noise-mode cross samples per poisoned sample (2 in the paper); they keep their true label
    cross_ratio: float = param(
        2.0,
        "Noise-mode cross samples per poisoned sample (they keep their true labels).",
        min=0.0,
        max=10.0,
    )
    # seed of the torch.Generator that draws the random field, so the warp is reproducible
    seed: int = param(0, "Seed of the random warping field.", min=0, max=2**32 - 1)

    @classmethod
    def limits(cls, info: DatasetInfo) -> dict[str, dict[str, Any]]:
        return {"k": {"max": min(info.shape[1:])}}


MAX_TRIGGER_FILE = 1 << 20  # bytes of a trigger image file (a 32x32 PNG is a few hundred)
MAX_TRIGGER_URI = 512 << 10  # characters of a data: URI kept in a spec (sidecars are <= 1 MiB)
MAX_TRIGGER_SIDE = 1024  # pixels per side, checked before decoding (decompression bombs)
DATA_URI = "data:image/png;base64,"


@dataclass(frozen=True)
class CustomConfig(_Config):
    """Your own trigger: ``(1 - alpha * mask) * x + alpha * mask * image``.

    ``image`` and ``mask`` are PNG files given by path or as ``data:image/png;base64,`` URIs
    (:func:`trigger_uri` makes one from a file's bytes, so a spec carries its trigger with it).
    Both are meant at the data's image size; others are resized with nearest-neighbour sampling,
    which keeps a patch's pixels sharp.
    """

    attack: ClassVar[str] = "custom"

    image: str = param(
        "",
        "The trigger's pixels: a PNG file (path or data: URI), at the data's image size. "
        "Required. An image with transparency and no mask uses its alpha channel as the mask.",
        path=True,
    )
    mask: str = param(
        "",
        "Where the trigger goes: a grey PNG of the same size (white: take the trigger's pixel, "
        "black: keep the image, grey: blend). Empty: the image's alpha channel, else everywhere.",
        path=True,
    )
    alpha: float = param(
        1.0,
        "Strength: the mask is multiplied by it (1 stamps the trigger, below 1 blends it in).",
        min=0.0,
        max=1.0,
        exclusive_min=True,
    )

    def check(self, info: DatasetInfo) -> None:
        if not self.image:
            raise ValueError(
                "custom: give the trigger image (a PNG: --trigger-image in the CLI, the "
                "'image' parameter in Python)"
            )


# ----------------------------------------------------------------------------------- triggers
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


def _patch_origin(location: str, height: int, width: int, size: int) -> tuple[int, int]:
    rows = {"top": 0, "bottom": height - size, "center": (height - size) // 2}
    cols = {"left": 0, "right": width - size, "center": (width - size) // 2}
    if location == "center":
        return rows["center"], cols["center"]
    vertical, horizontal = location.split("-")
    return rows[vertical], cols[horizontal]


class BadNetsTrigger(Trigger):
    """BadNets (Gu et al., 2017, arXiv 1708.06733): stamp a fixed patch, all channels alike."""

    name = "badnets"

    def __init__(self, config: BadNetsConfig, info: DatasetInfo) -> None:
        super().__init__(config, info)
        channels, height, width = info.shape
        s = config.size
        self.row, self.col = _patch_origin(config.location, height, width, s)
        if config.pattern == "white":
            patch = torch.ones(s, s)
        elif config.pattern == "black":
            patch = torch.zeros(s, s)
        else:  # checker: 1 where (i + j) is even
            ij = torch.arange(s)[:, None] + torch.arange(s)[None, :]
            patch = (ij % 2 == 0).float()
        self.patch = patch.expand(channels, s, s).clone()  # (C, s, s)

    @property
    def mask(self) -> Tensor:
        """Where the trigger writes: bool (H, W)."""
        mask = torch.zeros(self.info.shape[1:], dtype=torch.bool)
        s = self.config.size
        mask[self.row : self.row + s, self.col : self.col + s] = True
        return mask

    def apply(self, x: Tensor) -> Tensor:
        s = self.config.size
        out = x.clone()  # (B, C, H, W)
        out[:, :, self.row : self.row + s, self.col : self.col + s] = self.patch.to(
            x.device, x.dtype
        )
        return out


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


class BlendedTrigger(Trigger):
    """Blended (Chen et al., 2017, arXiv 1712.05526): ``(1 - alpha) * x + alpha * key``."""

    name = "blended"

    def __init__(self, config: BlendedConfig, info: DatasetInfo) -> None:
        super().__init__(config, info)
        path = Path(config.image).expanduser() if config.image else DEFAULT_BLENDED_TRIGGER
        self.pattern = _load_image(path, info)  # (C, H, W) in [0, 1]

    def apply(self, x: Tensor) -> Tensor:
        a = self.config.alpha
        key = self.pattern.to(x.device, x.dtype)
        return ((1.0 - a) * x + a * key).clamp_(0.0, 1.0)  # (B, C, H, W)


def _sinusoid(width: int, freq: int) -> Tensor:
    j = torch.arange(width, dtype=torch.float64)
    return torch.sin(2 * math.pi * j * freq / width).float()  # (W,)


class SIGTrigger(Trigger):
    """SIG (Barni et al., 2019, arXiv 1902.11237): add ``delta * sin(2 pi j f / W)`` along columns.

    Clean-label: poisoned training images are target-class images whose labels stay as they are;
    at test time the same signal is added to images of the other classes.
    """

    name = "sig"
    clean_label = True

    def __init__(self, config: SIGConfig, info: DatasetInfo) -> None:
        super().__init__(config, info)
        self.signal = config.delta * _sinusoid(info.shape[2], config.freq)  # (W,)

    def apply(self, x: Tensor) -> Tensor:
        return (x + self.signal.to(x.device, x.dtype)).clamp_(0.0, 1.0)  # (B, C, H, W)


class WaNetTrigger(Trigger):
    """WaNet (Nguyen & Tran, 2021, arXiv 2102.10369): warp every image with one fixed smooth field.

    A k x k field uniform in [-1, 1] (from ``torch.Generator().manual_seed(seed)``), divided by
    its mean absolute value, is upsampled bicubically to H x W. The sampling grid is
    ``clamp((identity + s * field / size) * grid_rescale, -1, 1)`` in ``grid_sample``'s
    coordinates (``align_corners=True``), with ``size`` = W for x offsets and H for y offsets (the
    paper's ``/ H`` for square images). Cross samples ("noise mode") add uniform noise in
    ``[-1, 1] / size`` per sample to that grid; they keep their true labels.
    """

    name = "wanet"
    has_cross = True

    def __init__(self, config: WaNetConfig, info: DatasetInfo) -> None:
        super().__init__(config, info)
        _, height, width = info.shape
        g = torch.Generator().manual_seed(config.seed)
        control = torch.rand(1, 2, config.k, config.k, generator=g) * 2 - 1
        control = control / control.abs().mean()
        field = F.interpolate(control, size=(height, width), mode="bicubic", align_corners=True)
        self.field = field.permute(0, 2, 3, 1).contiguous()  # (1, H, W, 2), (x, y) offsets
        ys = torch.linspace(-1, 1, height)
        xs = torch.linspace(-1, 1, width)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        identity = torch.stack((gx, gy), dim=-1)[None]  # (1, H, W, 2)
        self.scale = torch.tensor([1.0 / width, 1.0 / height])  # per-axis "/ H"
        grid = (identity + config.s * self.field * self.scale) * config.grid_rescale
        self.grid = grid.clamp(-1, 1)  # (1, H, W, 2)

    @property
    def cross_ratio(self) -> float:
        return self.config.cross_ratio

    def _warp(self, x: Tensor, grid: Tensor) -> Tensor:
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return out.clamp_(0.0, 1.0)  # (B, C, H, W)

    def apply(self, x: Tensor) -> Tensor:
        grid = self.grid.to(x.device, x.dtype).expand(len(x), -1, -1, -1)
        return self._warp(x, grid)

    def cross(self, x: Tensor, generator: torch.Generator) -> Tensor:
        self._check_input(x)
        if len(x) == 0:
            return x.clone()
        _, height, width = self.info.shape
        noise = torch.rand(len(x), height, width, 2, generator=generator, device=generator.device)
        noise = (noise * 2 - 1) * self.scale.to(noise.device)
        grid = (self.grid.to(noise.device) + noise).clamp(-1, 1)
        return self._warp(x, grid.to(x.device, x.dtype))


class CustomTrigger(Trigger):
    """Your own trigger (:class:`CustomConfig`): ``(1 - alpha m) x + alpha m image`` per pixel,
    with ``m`` in [0, 1] the mask (the same for every channel)."""

    name = "custom"

    def __init__(self, config: CustomConfig, info: DatasetInfo) -> None:
        from PIL import Image

        super().__init__(config, info)
        nearest = Image.Resampling.NEAREST
        mode = _channels_mode(info, "custom")
        img = _open_image(config.image, "custom image")
        self.pattern = _to_tensor(img, mode, info, nearest)  # (C, H, W)
        if config.mask:
            mask = _to_tensor(_open_image(config.mask, "custom mask"), "L", info, nearest)
        elif img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            mask = _to_tensor(img.convert("RGBA").getchannel("A"), "L", info, nearest)
        else:
            mask = torch.ones(1, *info.shape[1:])
        if float(mask.max()) <= 0:
            raise ValueError("custom: the mask is black everywhere, so the trigger changes nothing")
        self.weight = config.alpha * mask  # (1, H, W) in [0, 1]

    @property
    def mask(self) -> Tensor:
        """Where the trigger writes: bool (H, W)."""
        return self.weight[0] > 0

    def apply(self, x: Tensor) -> Tensor:
        m = self.weight.to(x.device, x.dtype)
        key = self.pattern.to(x.device, x.dtype)
        return ((1.0 - m) * x + m * key).clamp_(0.0, 1.0)  # (B, C, H, W)


# ----------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class AttackEntry:
    """A registered attack: its config class, a builder ``(config, info) -> Trigger``, a help line."""

    config: type
    build: Callable[[Any, DatasetInfo], Trigger]
    help: str
    clean_label: bool = False
    # parameters that make a working example where the defaults cannot (the custom trigger
    # needs an image): for tests, previews and docs
    example: Callable[[], dict] | None = None


ATTACKS: dict[str, AttackEntry] = {
    "badnets": AttackEntry(
        BadNetsConfig,
        BadNetsTrigger,
        "BadNets (Gu et al., 2017): a small white square in a corner.",
    ),
    "blended": AttackEntry(
        BlendedConfig,
        BlendedTrigger,
        "Blended (Chen et al., 2017): a key image mixed into the whole picture.",
    ),
    "sig": AttackEntry(
        SIGConfig,
        SIGTrigger,
        "SIG (Barni et al., 2019): a faint sinusoid on target-class images, labels kept.",
        clean_label=True,
    ),
    "wanet": AttackEntry(
        WaNetConfig,
        WaNetTrigger,
        "WaNet (Nguyen & Tran, 2021): an invisible smooth warp of the image.",
    ),
    "custom": AttackEntry(
        CustomConfig,
        CustomTrigger,
        "Your own trigger: an image and a mask (PNG files) stamped or blended in.",
        example=lambda: _example_custom(),
    ),
}


def _example_custom() -> dict:
    """A custom trigger the project does not ship: a white cross over the top-left quarter (4x4
    on an 8x8 canvas, scaled to the data's size), as a transparent PNG whose alpha is the mask;
    for tests and the docs."""
    import io

    from PIL import Image

    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    for i in range(4):
        img.putpixel((i, i), (255, 255, 255, 255))
        img.putpixel((3 - i, i), (255, 255, 255, 255))
    canvas = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    canvas.paste(img, (0, 0))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return {"image": trigger_uri(buf.getvalue(), "the example cross")}


def example_params(name: str) -> dict:
    """Parameters that build a working trigger of attack ``name``: its example (the custom
    trigger's needs an image) or {} for the defaults."""
    entry = _entry(name)
    return entry.example() if entry.example is not None else {}


def list_attacks() -> list[str]:
    return sorted(ATTACKS)


def _entry(name: str) -> AttackEntry:
    try:
        return ATTACKS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown attack {name!r}; choose from {', '.join(list_attacks())}"
        ) from None


def make_config(name: str, params: Mapping[str, Any] | Any | None = None) -> Any:
    """The config of attack ``name`` with ``params`` (a dict of overrides, a config or None).

    Checks parameter names, types and the size-independent bounds; ValueError otherwise.
    """
    return config_from("attack", name, _entry(name).config, params)


def create_trigger(
    name: str, info: DatasetInfo, params: Mapping[str, Any] | Any | None = None
) -> Trigger:
    """Build the trigger of attack ``name`` for data set ``info``.

    ``params``: a dict of config overrides (JSON-like), a config instance, or None for the
    defaults. Unknown attack or parameter names, wrong types and out-of-range values (also those
    that depend on the image size) raise ValueError.
    """
    config = make_config(name, params)
    config.validate(info)
    return _entry(name).build(config, info)


def path_params(name: str) -> tuple[str, ...]:
    """The parameters of attack ``name`` that name a file (``param(..., path=True)``): a web form
    never offers them as text, and an upload never reads a path given in them."""
    return tuple(f.name for f in dataclasses.fields(_entry(name).config) if f.metadata.get("path"))


def param_schema(name: str, info: DatasetInfo | None = None) -> list[dict[str, Any]]:
    """Form fields of attack ``name``: dicts with ``name``, ``type`` ("int", "float", "str",
    "bool"), ``default``, ``help`` and, where they apply, ``min``, ``max``, ``exclusive_min`` and
    ``choices``; with ``info`` the size-dependent bounds are resolved too."""
    return config_schema(_entry(name).config, info)


# ------------------------------------------------------------------------------- the poisoning
_SPEC_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "params": (dict,),
    "target": (int,),
    "label_rule": (str,),
    "poison_ratio": (float, int),
    "seed": (int,),
}


@dataclass(frozen=True)
class AttackSpec:
    """Everything that defines one poisoning; JSON-serialisable via :meth:`to_dict`.

    ``name``: registered attack (default "badnets"); ``params``: config overrides (a JSON-like
    dict, {} for the defaults); ``target``: target class (default 0); ``label_rule``: "all2one"
    or "all2all"; ``poison_ratio``: fraction of the training set to poison, in (0, 1] (default
    0.1); ``seed``: seed of the poisoned-sample draw (default 0).
    """

    name: str = "badnets"
    params: dict = field(default_factory=dict, hash=False)
    target: int = 0
    label_rule: str = "all2one"
    poison_ratio: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        params = self.params
        if dataclasses.is_dataclass(params) and not isinstance(params, type):
            params = dataclasses.asdict(params)
        object.__setattr__(self, "params", dict(params) if isinstance(params, Mapping) else params)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "params": dict(self.params),
            "target": self.target,
            "label_rule": self.label_rule,
            "poison_ratio": self.poison_ratio,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AttackSpec:
        """Inverse of :meth:`to_dict`; missing keys take the defaults, others raise ValueError."""
        if not isinstance(d, Mapping):
            raise ValueError(f"an attack spec must be a dict, got {type(d).__name__}")
        unknown = sorted(str(k) for k in d if k not in _SPEC_TYPES)
        if unknown:
            raise ValueError(
                f"unknown attack spec key(s) {', '.join(map(repr, unknown))}; "
                f"expected {', '.join(_SPEC_TYPES)}"
            )
        for key, value in d.items():
            kinds = _SPEC_TYPES[key]
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ValueError(
                    f"attack spec {key!r} must be {' or '.join(k.__name__ for k in kinds)}, "
                    f"got {value!r}"
                )
        kwargs = dict(d)
        if "poison_ratio" in kwargs:
            kwargs["poison_ratio"] = float(kwargs["poison_ratio"])
        return cls(**kwargs)

    def validate(self, info: DatasetInfo) -> None:
        """Check the spec against a data set: attack and params, target, rule, ratio; ValueError."""
        self.trigger(info)  # unknown attack, bad params

    def trigger(self, info: DatasetInfo) -> Trigger:
        """The validated trigger of this spec for data set ``info``."""
        entry = _entry(self.name)
        k = info.num_classes
        if (
            isinstance(self.target, bool)
            or not isinstance(self.target, int)
            or not 0 <= self.target < k
        ):
            raise ValueError(f"target class must be an int in [0, {k - 1}], got {self.target!r}")
        if self.label_rule not in LABEL_RULES:
            raise ValueError(
                f"label_rule must be one of {list(LABEL_RULES)}, got {self.label_rule!r}"
            )
        if entry.clean_label and self.label_rule != "all2one":
            raise ValueError(f"{self.name} is a clean-label attack and supports only all2one")
        ratio = self.poison_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
            raise ValueError(f"poison_ratio must be in (0, 1], got {ratio!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if not isinstance(self.params, Mapping):
            raise ValueError(f"attack params must be a dict, got {type(self.params).__name__}")
        return create_trigger(self.name, info, self.params)


def target_labels(y: Tensor, spec: AttackSpec, num_classes: int) -> Tensor:
    """The label rule: the attack's labels for true labels ``y`` (N,) -> (N,) int64.

    ``all2one``: every label becomes ``spec.target``; ``all2all``: ``(y + 1) mod num_classes``.
    """
    if spec.label_rule == "all2one":
        return torch.full_like(y, spec.target)
    if spec.label_rule == "all2all":
        return (y + 1) % num_classes
    raise ValueError(f"label_rule must be one of {list(LABEL_RULES)}, got {spec.label_rule!r}")


def _draw_poison(y: Tensor, spec: AttackSpec, clean_label: bool, g: torch.Generator) -> Tensor:
    n = len(y)
    if clean_label:
        pool = (y == spec.target).nonzero().squeeze(1)
        kind = f"training images of the target class {spec.target}"
    elif spec.label_rule == "all2one":
        pool = (y != spec.target).nonzero().squeeze(1)
        kind = f"training images outside the target class {spec.target}"
    else:
        pool = torch.arange(n)
        kind = "training images"
    if len(pool) == 0:
        raise ValueError(f"{spec.name}: there are no {kind} to poison")
    count = min(max(1, round(spec.poison_ratio * n)), len(pool))
    chosen = pool[torch.randperm(len(pool), generator=g)[:count]]
    return chosen.sort().values


def poison_indices(train: ImageData, spec: AttackSpec) -> Tensor:
    """Indices of the training images to poison: sorted int64 (P,), on the CPU.

    ``P = round(poison_ratio * N)`` (at least 1), drawn without replacement by
    ``torch.randperm`` from ``torch.Generator().manual_seed(spec.seed)``, so the same seed gives
    the same indices. Candidates: for clean-label attacks (SIG) only target-class images, and P
    is capped at their number; for all2one dirty-label attacks only images whose true label is
    not the target (relabelling a target-class image would be a no-op, so every poisoned sample
    really teaches the backdoor, as is common), P capped likewise; for all2all every image.
    The ratio is always relative to the whole training set.
    """
    trigger = spec.trigger(train.info)
    g = torch.Generator().manual_seed(spec.seed)
    return _draw_poison(train.y.cpu(), spec, trigger.clean_label, g)


@dataclass
class PoisonedTrain:
    """A poisoned training set.

    ``data``: the full training set, poisoned images replaced and their labels set by the rule
    (clean-label attacks keep the labels); ``poison_idx``: sorted int64 (P,); ``cross_idx``:
    sorted int64 (Q,) WaNet noise-mode cross samples (true labels), disjoint from
    ``poison_idx``, empty for other attacks.
    """

    data: ImageData
    poison_idx: Tensor
    cross_idx: Tensor


def _batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int) -> Tensor:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(x) == 0:
        return x.clone()
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def poison_train(train: ImageData, spec: AttackSpec, batch_size: int = 1024) -> PoisonedTrain:
    """Poison a training set by ``spec``; ``train`` itself is never modified.

    The poisoned indices are those of :func:`poison_indices`. For triggers with cross samples
    (WaNet), ``round(cross_ratio * P)`` more images (capped at the remaining ones) are drawn
    from the non-poisoned ones with the same generator, continued, and warped with random noise
    from it; they keep their true labels. The poisoning is static: drawn once, here, not per
    epoch. The trigger runs in batches of ``batch_size`` on ``train``'s device.
    """
    trigger = spec.trigger(train.info)
    g = torch.Generator().manual_seed(spec.seed)
    y_cpu = train.y.cpu()
    poison_idx = _draw_poison(y_cpu, spec, trigger.clean_label, g)
    x, y = train.x.clone(), train.y.clone()
    dev_poison = poison_idx.to(x.device)
    x[dev_poison] = _batched(trigger, train.x[dev_poison], batch_size)
    if not trigger.clean_label:
        y[dev_poison] = target_labels(train.y[dev_poison], spec, train.info.num_classes)

    cross_idx = torch.empty(0, dtype=torch.long)
    if trigger.has_cross:
        free = torch.ones(len(y_cpu), dtype=torch.bool)
        free[poison_idx] = False
        pool = free.nonzero().squeeze(1)
        count = min(round(trigger.cross_ratio * len(poison_idx)), len(pool))
        cross_idx = pool[torch.randperm(len(pool), generator=g)[:count]].sort().values
        dev_cross = cross_idx.to(x.device)
        x[dev_cross] = _batched(lambda b: trigger.cross(b, g), train.x[dev_cross], batch_size)
    return PoisonedTrain(ImageData(x, y, train.info), poison_idx, cross_idx)


@dataclass
class BackdoorTest:
    """A triggered test set: ``x`` (M, C, H, W) triggered images, ``y`` (M,) their TRUE labels
    (robust accuracy), ``target`` (M,) the attack's labels by the rule (attack success rate),
    ``index`` (M,) int64 their indices in the test set."""

    x: Tensor
    y: Tensor
    target: Tensor
    index: Tensor

    def __len__(self) -> int:
        return len(self.y)


def backdoor_test(test: ImageData, spec: AttackSpec, batch_size: int = 1024) -> BackdoorTest:
    """The test set with the trigger applied, for ASR and RA.

    all2one (also clean-label attacks): only test images whose true label is not the target, as
    a target-class image says nothing about the backdoor; all2all: every test image.
    """
    trigger = spec.trigger(test.info)
    if spec.label_rule == "all2one":
        index = (test.y.cpu() != spec.target).nonzero().squeeze(1)
    else:
        index = torch.arange(len(test))
    dev_index = index.to(test.x.device)
    x = _batched(trigger, test.x[dev_index], batch_size)
    y = test.y[dev_index].clone()
    return BackdoorTest(x, y, target_labels(y, spec, test.info.num_classes), index)
