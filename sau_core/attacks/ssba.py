"""SSBA, sample-specific invisible backdoor (Li, Li, Wu, Li, He and Lyu, ICCV 2021,
arXiv 2012.03816): an encoder hides one fixed code in every poisoned image as a small residual.
The residual depends on the image, so it differs from image to image; the model learns to react
to the hidden code, not to any one pattern.

The paper uses StegaStamp (Tancik, Mildenhall and Ng, CVPR 2020): a U-Net encoder trained on
ImageNet with perceptual and adversarial image losses, a 100-bit code, and no fixed bound on the
residual. None can be downloaded here, so SAU Lab ships its own small encoder and decoder
(``assets/ssba/``, made by ``assets/make_ssba.py``, seeded, SHA-256 in
``assets/ssba/manifest.json``). As in StegaStamp, the code goes through a dense layer to a coarse
spatial map that is upsampled to the image and read by convolutions together with the image; the
decoder reads the code back. Unlike StegaStamp, it is small (3 convolutions, 32 channels), hides
16 bits, was trained on digits and smooth colour images (not photographs), and its residual is
bounded in L_inf by ``eps`` (``tanh`` scaled), with a loss that pushes it off flat regions onto
strokes and texture. The attack's mechanism, an image-dependent residual that carries one code, is
the paper's.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._assets import asset_dir
from ..config import param
from ..data import DatasetInfo
from .base import Trigger, _Config

ENCODER, DECODER, MANIFEST = "encoder.safetensors", "decoder.safetensors", "manifest.json"
MAX_WEIGHTS = 16 << 20  # bytes: the shipped encoder and decoder are about 100 KiB each
GRID = 8  # the code's spatial map is GRID x GRID before it is upsampled to the image


def ssba_dir() -> Path:
    """The folder of the shipped encoder and decoder."""
    return asset_dir() / "ssba"


class StegaEncoder(nn.Module):
    """(x (B, 3, H, W) in [0, 1], code (B, bits) in {0, 1}) -> residual (B, 3, H, W) in (-1, 1);
    the trigger scales it by eps. The code goes through a dense layer to ``maps`` coarse spatial
    maps, upsampled to (H, W) and read by convolutions beside the image (StegaStamp's design), so
    the residual depends on both and any image size works."""

    def __init__(self, bits: int = 16, width: int = 32, maps: int = 4) -> None:
        super().__init__()
        self.bits, self.width, self.maps = bits, width, maps
        self.code = nn.Linear(bits, maps * GRID * GRID)
        self.net = nn.Sequential(
            nn.Conv2d(3 + maps, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 3, 3, padding=1),
        )  # fmt: skip

    def forward(self, x: Tensor, code: Tensor) -> Tensor:
        """``code``: (B, bits), or (1, bits) for one code for every image (its map is computed
        once, so an image's residual does not depend on the batch it comes in)."""
        b, _, h, w = x.shape
        spread = (
            self.code(code * 2 - 1).view(len(code), self.maps, GRID, GRID).expand(b, -1, -1, -1)
        )
        spread = F.interpolate(spread, size=(h, w), mode="bilinear", align_corners=False)
        return torch.tanh(self.net(torch.cat([x, spread], 1)))


class StegaDecoder(nn.Module):
    """(image (B, 3, H, W)) -> code logits (B, bits): convolutions, an average down to 4x4, and
    a dense layer (any image size works)."""

    def __init__(self, bits: int = 16, width: int = 32) -> None:
        super().__init__()
        self.bits, self.width = bits, width
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, bits),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def encode(encoder: StegaEncoder, x: Tensor, code: Tensor) -> Tensor:
    """The encoder's residual (in (-1, 1), before the eps scale) for images of 1 or 3 channels:
    grey images are read as three equal channels and get the residual's channel mean, as the
    encoder was trained."""
    r = encoder(x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1), code)
    return r if x.shape[1] == 3 else r.mean(1, keepdim=True)


def decode(decoder: StegaDecoder, x: Tensor) -> Tensor:
    """The decoder's code logits (B, bits) for images of 1 or 3 channels."""
    return decoder(x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1))


def code_bits(seed: int, bits: int) -> Tensor:
    """The secret code: ``bits`` bits drawn from ``seed`` (float 0/1, shape (bits,))."""
    return torch.randint(0, 2, (bits,), generator=torch.Generator().manual_seed(seed)).float()


def encoder_sha256(folder: Path | str | None = None) -> str:
    """The SHA-256 the manifest gives the encoder (:func:`load_stega` checks the file against
    it); ValueError when the manifest cannot be read."""
    manifest = (ssba_dir() if folder is None else Path(folder)) / MANIFEST
    try:
        return str(json.loads(manifest.read_text(encoding="utf-8"))["sha256"][ENCODER]).lower()
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"the SSBA encoder's manifest {manifest} is missing or unreadable "
                         f"({str(err)[:80]}); restore it from the project") from None  # fmt: skip


def pins() -> dict:
    """What a planted SSBA spec records of the files its trigger uses: the encoder's SHA-256."""
    return {"encoder_sha256": encoder_sha256()}


def load_stega(kind: str, folder: Path | str | None = None) -> nn.Module:
    """The shipped encoder (``kind`` "encoder") or decoder ("decoder"), checked against the
    SHA-256 and the sizes in the folder's manifest and read with safetensors (never unpickled),
    in eval mode with gradients off, its SHA-256 as ``.sha256``. ValueError naming the file and what to do when it is
    missing, changed or does not fit."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if kind not in ("encoder", "decoder"):
        raise ValueError(f"kind must be 'encoder' or 'decoder', not {kind!r}")
    folder = ssba_dir() if folder is None else Path(folder)
    name = ENCODER if kind == "encoder" else DECODER
    path, manifest = folder / name, folder / MANIFEST
    remake = "restore it from the project, or remake it with `python assets/make_ssba.py`"
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        bits, width, want = int(meta["bits"]), int(meta["width"]), str(meta["sha256"][name])
        if not (1 <= bits <= 256 and 1 <= width <= 256):
            raise ValueError(f"bits {bits} or width {width} out of range")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"the SSBA {kind}'s manifest {manifest} is missing or unreadable "
                         f"({str(err)[:80]}); {remake}") from None  # fmt: skip
    if not path.is_file():
        raise ValueError(f"the SSBA {kind} {path} is missing; {remake}")
    raw = path.read_bytes() if path.stat().st_size <= MAX_WEIGHTS else b""
    if hashlib.sha256(raw).hexdigest() != want:
        raise ValueError(f"the SSBA {kind} {path} does not match its SHA-256 in {MANIFEST} "
                         f"(changed or damaged); {remake}")  # fmt: skip
    try:
        state = load(raw)
    except (SafetensorError, ValueError) as err:  # matches its hash but is no safetensors
        raise ValueError(f"the SSBA {kind} {path} cannot be read as safetensors ({err}); "
                         f"{remake}") from None  # fmt: skip
    module = StegaEncoder(bits, width) if kind == "encoder" else StegaDecoder(bits, width)
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"the SSBA {kind} {path} does not fit its architecture "
                         f"({str(err)[:120]}); {remake}") from None  # fmt: skip
    module.sha256 = want.lower()  # what the file was checked against (a spec records it)
    return module.eval().requires_grad_(False)


@dataclass(frozen=True)
class SSBAConfig(_Config):
    """SSBA (Li et al., 2021): ``x + eps * encoder(x, code)``, a residual different per image."""

    attack: ClassVar[str] = "ssba"

    # measured on digits 16x16 (wide_cnn, 10%, the demo's training): 0.05 (the encoder's
    # training budget) gave ASR 0.16 at ACC 0.96; 0.1 gave ASR 1.00 at ACC 0.99
    eps: float = param(0.1, "Largest pixel change of the hidden residual (L_inf; the shipped "
                       "encoder was trained at 0.05 and its residual is scaled to this).",
                       min=0.0, max=0.5, exclusive_min=True)  # fmt: skip
    code_seed: int = param(0, "Seed of the secret code the encoder hides in every poisoned "
                           "image.", min=0, max=2**31 - 1)  # fmt: skip
    # the encoder is a file outside the spec: a spec records which one made its trigger, so a
    # remade encoder can never silently stand in for it (filled when the backdoor is planted)
    encoder_sha256: str = param("", "SHA-256 of the encoder the trigger was made with (recorded "
                                "when the backdoor is planted; empty: the shipped one).",
                                hidden=True)  # fmt: skip


class SSBATrigger(Trigger):
    """SSBA (Li et al., 2021, arXiv 2012.03816): add the encoder's residual for the code, a
    different residual on every image."""

    name = "ssba"
    per_image = True

    def __init__(self, config: SSBAConfig, info: DatasetInfo) -> None:
        super().__init__(config, info)
        pinned = config.encoder_sha256.strip().lower()
        if pinned and not re.fullmatch(r"[0-9a-f]{64}", pinned):
            raise ValueError("ssba parameter 'encoder_sha256' must be 64 hexadecimal digits (or "
                             f"empty for the shipped encoder), got {config.encoder_sha256!r:.80}")  # fmt: skip
        self.encoder = load_stega("encoder")
        installed = self.encoder.sha256  # of the file just loaded and checked
        if pinned and pinned != installed:
            raise ValueError(
                f"this SSBA trigger was made with the encoder {pinned[:12]}…, but the installed "
                f"one ({ssba_dir()}) is {installed[:12]}…: its ASR and RA would be measured with "
                "another trigger. Restore the encoder the model was planted with, or plant the "
                "backdoor again with this one"
            )
        self.code = code_bits(config.code_seed, self.encoder.bits)  # (bits,)

    def residual(self, x: Tensor) -> Tensor:
        """The residual (B, C, H, W) the trigger adds to ``x`` (before clipping to [0, 1])."""
        enc = self.encoder.to(x.device)
        with torch.no_grad():
            r = encode(enc, x.float(), self.code.to(x.device)[None])
        return (self.config.eps * r).to(x.dtype)

    def apply(self, x: Tensor) -> Tensor:
        return (x + self.residual(x)).clamp_(0.0, 1.0)
