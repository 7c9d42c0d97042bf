"""SIG (Barni et al., ICIP 2019, arXiv 1902.11237): a horizontal sinusoid added to target-class
images, labels kept (clean-label).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..config import param
from ..data import DatasetInfo
from .base import Trigger, _Config


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
