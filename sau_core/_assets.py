"""Where SAU Lab's shipped files are: the Blended trigger image and the ready-made checkpoints.

In a checkout they are in ``assets/`` beside the package; an installed wheel carries the same
files as package data in ``sau_core/assets/`` (``pyproject.toml`` maps the folder), so a plain
``pip install .`` works without the checkout.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def asset_dir() -> Path:
    """The folder of the shipped assets: the wheel's package data, else the checkout's."""
    packaged = _HERE / "assets"
    return packaged if packaged.is_dir() else _HERE.parent / "assets"
