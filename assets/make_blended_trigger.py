"""Make SAU Lab's default Blended trigger, ``assets/blended_trigger.png``.

The Blended attack (Chen et al., 2017, arXiv 1712.05526) mixes a fixed key image into the
poisoned inputs. The paper used a photo or uniform noise; SAU Lab ships its own pattern instead:
smooth coloured "value noise", the sum of two octaves of a random lattice (8x8 and 4x4 cells at
32 px) interpolated with smoothstep, one independent field per RGB channel, each stretched to
the full [0, 255] range. It has both coarse blobs and finer texture, so it survives the
downsampling to 8x8 or 16x16 that the Blended attack does for small data sets.

Deterministic: the lattice values come from ``random.Random(seed).random()``, whose sequence
Python guarantees across versions, and the rest is plain arithmetic. Run from anywhere::

    python assets/make_blended_trigger.py                 # writes assets/blended_trigger.png
    python assets/make_blended_trigger.py --size 64 --seed 1 --out /tmp/key.png
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_OUT = Path(__file__).resolve().parent / "blended_trigger.png"
OCTAVES = ((4, 0.6), (8, 0.4))  # (lattice cells per side, weight)


def value_noise(size: int, cells: int, rng: random.Random) -> np.ndarray:
    """One periodic value-noise field of shape (size, size) in [0, 1]."""
    lattice = np.array([[rng.random() for _ in range(cells)] for _ in range(cells)])
    t = np.arange(size) * cells / size  # lattice coordinate of each pixel
    i0 = np.floor(t).astype(int)
    i1 = (i0 + 1) % cells  # periodic, so the pattern tiles seamlessly
    f = t - i0
    f = f * f * (3.0 - 2.0 * f)  # smoothstep
    top = lattice[i0][:, i0] * (1 - f)[None, :] + lattice[i0][:, i1] * f[None, :]
    bottom = lattice[i1][:, i0] * (1 - f)[None, :] + lattice[i1][:, i1] * f[None, :]
    return top * (1 - f)[:, None] + bottom * f[:, None]


def make_pattern(size: int = 32, seed: int = 0) -> np.ndarray:
    """The trigger as a uint8 array of shape (size, size, 3)."""
    rng = random.Random(seed)
    channels = []
    for _ in range(3):
        field = sum(w * value_noise(size, cells, rng) for cells, w in OCTAVES)
        field = (field - field.min()) / max(field.max() - field.min(), 1e-12)
        channels.append(np.round(field * 255.0).astype(np.uint8))
    return np.stack(channels, axis=-1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="side length in pixels (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="pattern seed (default 0)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    args = parser.parse_args(argv)
    if args.size < 4:
        parser.error("--size must be at least 4")
    Image.fromarray(make_pattern(args.size, args.seed), mode="RGB").save(args.out)
    print(f"wrote {args.out} ({args.size}x{args.size} RGB, seed {args.seed})")


if __name__ == "__main__":
    main()
