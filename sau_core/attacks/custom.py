"""Your own trigger: an image and a mask (PNG files or ``data:`` URIs), stamped or blended where
the mask says: ``(1 - alpha m) x + alpha m image``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..config import param
from ..data import DatasetInfo
from .base import Trigger, _channels_mode, _Config, _open_image, _to_tensor, trigger_uri


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
