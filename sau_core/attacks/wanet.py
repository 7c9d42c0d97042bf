"""WaNet (Nguyen & Tran, ICLR 2021, arXiv 2102.10369): a fixed smooth warping field, with "noise
mode" cross samples that teach the model to ignore other warps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import param
from ..data import DatasetInfo
from .base import Trigger, _Config


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
