"""BadNets (Gu et al., 2017, arXiv 1708.06733): a small pixel patch stamped on the image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..config import param
from ..data import DatasetInfo
from .base import Trigger, _Config

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
