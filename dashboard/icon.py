"""SAU Lab's page icon, drawn here: a Material icon or an emoji as ``page_icon`` makes the
browser fetch it from a font or emoji server, and the app makes no request outside the machine."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def app_icon():
    """A 64x64 shield (PIL image) that Streamlit serves itself as the favicon."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    shield = [(32, 4), (56, 13), (53, 38), (32, 60), (11, 38), (8, 13)]
    draw.polygon(shield, fill=(185, 28, 28, 255))
    draw.line([(21, 33), (29, 41), (44, 23)], fill=(255, 255, 255, 255), width=6)
    return img
