"""LF, low frequency (Zeng, Park, Mao, Jin, Jia and Jia, ICCV 2021, arXiv 2104.03413): a trigger
with no high-frequency content, so frequency-based detectors and the eye miss it. SAU Lab makes it
the way the paper describes: a universal adversarial perturbation (one pattern for every image)
found against a clean model and kept low-pass, added to the image.

The pattern is computed once, when a backdoor is planted (:func:`~sau_core.attacks.prepare_spec`), and then carried in
the attack's spec (``pattern``: a ``data:`` URI of a safetensors tensor, never unpickled), so the
model's checkpoint holds the very trigger it was trained with. The trigger low-passes and scales it
for the data's geometry, so the spectrum above the cut-off is zero by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import param
from ..data import DatasetInfo, ImageData
from .base import TENSORS_URI, Trigger, _Config, read_tensors_uri, tensors_uri

PATTERN_URI = TENSORS_URI  # the spec's data: URI of the pattern
MAX_PATTERN_SIDE = 1024


@dataclass(frozen=True)
class LFConfig(_Config):
    """LF (Zeng et al., 2021): ``x + pattern``, a universal perturbation kept to low frequencies."""

    attack: ClassVar[str] = "lf"

    # measured on digits 16x16 (wide_cnn, 10%): 0.1 gave ASR 0.64, 0.2 gave 0.98 at ACC 0.99
    eps: float = param(0.2, "Largest pixel change of the pattern (L_inf, pixel units).",
                       min=0.0, max=1.0, exclusive_min=True)  # fmt: skip
    # the share of the frequencies kept along each axis (1: all, no filtering)
    cutoff: float = param(0.25, "Share of the spatial frequencies kept along each axis.",
                          min=0.0, max=1.0, exclusive_min=True)  # fmt: skip
    steps: int = param(200, "Optimisation steps of the universal perturbation.", min=1,
                       max=10000)  # fmt: skip
    surrogate_epochs: int = param(10, "Epochs of the clean surrogate the pattern fools.",
                                  min=1, max=200)  # fmt: skip
    # computed when the backdoor is planted; a checkpoint's spec carries it
    pattern: str = param("", "The pattern (computed when the backdoor is planted).", path=True)


def low_pass(x: Tensor, cutoff: float) -> Tensor:
    """``x`` (..., H, W) with every spatial frequency above ``cutoff`` (a share of the Nyquist
    frequency, per axis) set to zero: an ideal low-pass filter through the 2-D DFT."""
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h, dtype=torch.float64).abs() * 2  # in units of Nyquist
    fx = torch.fft.fftfreq(w, dtype=torch.float64).abs() * 2
    keep = (fy[:, None] <= cutoff + 1e-9) & (fx[None, :] <= cutoff + 1e-9)  # (H, W)
    spectrum = torch.fft.fft2(x.double()) * keep
    return torch.fft.ifft2(spectrum).real.to(x.dtype)


def pattern_uri(pattern: Tensor) -> str:
    """A (C, H, W) pattern as the ``data:`` URI an LF spec carries (safetensors, float32)."""
    return tensors_uri({"pattern": pattern})


def read_pattern(uri: str) -> Tensor:
    """The pattern in an LF ``data:`` URI; ValueError for anything else (never unpickled)."""
    what = "lf parameter 'pattern'"
    t = read_tensors_uri(uri, what, "pattern").get("pattern")
    if (t is None or t.ndim != 3 or t.shape[0] not in (1, 3)
            or not 1 <= min(t.shape[1:]) <= max(t.shape[1:]) <= MAX_PATTERN_SIDE):  # fmt: skip
        raise ValueError(f"{what} must hold one (1 or 3, H, W) tensor named 'pattern'")
    if not t.is_floating_point() or not torch.isfinite(t).all():
        raise ValueError(f"{what} must hold finite floating-point values")
    return t.float()


def fit_pattern(pattern: Tensor, info: DatasetInfo, cutoff: float, eps: float) -> Tensor:
    """``pattern`` (C', H', W') for the data's geometry: channels matched (grey to colour by
    copying, colour to grey by averaging), resized bilinearly, low-passed at ``cutoff`` and scaled
    so its largest absolute value is ``eps`` (scaling keeps the spectrum's support)."""
    c, h, w = info.shape
    p = pattern.float()
    if p.shape[0] != c:
        p = p.mean(0, keepdim=True).expand(c, *p.shape[1:])
    if tuple(p.shape[1:]) != (h, w):
        p = F.interpolate(p[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    p = low_pass(p, cutoff)
    peak = p.abs().max()
    return p * (eps / peak) if peak > 0 else p


class LFTrigger(Trigger):
    """LF (Zeng et al., 2021, arXiv 2104.03413): add a low-frequency universal pattern."""

    name = "lf"

    def __init__(self, config: LFConfig, info: DatasetInfo) -> None:
        super().__init__(config, info)
        if not config.pattern:
            raise ValueError(
                "the lf trigger has no pattern yet: it is computed against a clean model when "
                "the backdoor is planted (sau attack --attack lf, or the Attack page)"
            )
        self.pattern = fit_pattern(read_pattern(config.pattern), info, config.cutoff,
                                   config.eps)  # fmt: skip  # (C, H, W)

    def apply(self, x: Tensor) -> Tensor:
        return (x + self.pattern.to(x.device, x.dtype)).clamp_(0.0, 1.0)


def universal_pattern(model: torch.nn.Module, train: ImageData, config: LFConfig, target: int | None,
                      seed: int) -> Tensor:  # fmt: skip
    """The universal perturbation (C, H, W): Adam steps on one pattern, over random batches of
    ``train``, that send ``model``'s answers to ``target`` (or, with None, away from the true
    labels), each step followed by the low-pass filter and a rescale into the eps ball."""
    g = torch.Generator().manual_seed(seed)
    x_all, y_all = train.x, train.y
    if target is not None:
        keep = (y_all != target).nonzero().squeeze(1)
        x_all, y_all = x_all[keep], y_all[keep]
    device = x_all.device
    delta = torch.zeros(train.info.shape, device=device, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=config.eps / 10)
    for _ in range(config.steps):
        idx = torch.randint(len(x_all), (min(128, len(x_all)),), generator=g).to(device)
        x, y = x_all[idx], y_all[idx]
        logits = model((x + delta).clamp(0.0, 1.0))
        if target is None:
            loss = -F.cross_entropy(logits, y)
        else:
            loss = F.cross_entropy(logits, torch.full_like(y, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            p = low_pass(delta, config.cutoff)
            peak = p.abs().max()
            delta.copy_(p * (config.eps / peak) if peak > config.eps else p)
    return delta.detach().cpu()


def prepare(config: LFConfig, train: ImageData, target: int | None, seed: int) -> str:
    """LF's pattern, computed against a clean surrogate trained on ``train`` (towards ``target``;
    away from the true labels with None), as the URI its spec carries (:func:`prepare_spec`)."""
    from .surrogate import clean_surrogate

    model = clean_surrogate(train, epochs=config.surrogate_epochs, seed=seed)
    return pattern_uri(universal_pattern(model, train, config, target, seed))
