"""Blended (Chen et al., 2017, arXiv 1712.05526): a key image alpha-blended into the whole image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from torch import Tensor

from ..config import param
from ..data import DatasetInfo
from .base import DEFAULT_BLENDED_TRIGGER, Trigger, _Config, _load_image


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
