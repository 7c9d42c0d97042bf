"""LC, label-consistent (Turner, Tsipras and Madry, 2019, arXiv 1912.02771): clean-label
poisoning that survives a defender who checks labels. Target-class training images are first made
hard to learn with an adversarial perturbation against a clean model (PGD within an L_inf budget),
then stamped with a checkerboard patch in the corners; their labels are kept. A model that cannot
learn the hard images from their content learns the patch instead. At test time the trigger is the
patch alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import param
from ..data import DatasetInfo, ImageData
from .base import Trigger, _Config, batched

LC_CORNERS = ("four", "one")


@dataclass(frozen=True)
class LCConfig(_Config):
    """LC (Turner et al., 2019): PGD-hardened target-class images plus a corner checkerboard."""

    attack: ClassVar[str] = "lc"

    # the L_inf budget of the hardening perturbation, [0, 1] pixel units: the paper's largest
    # (16 of 255 on CIFAR-10's 0..255 range)
    eps: float = param(16 / 255, "L_inf budget of the adversarial perturbation (pixel units).",
                       min=0.0, max=1.0)  # fmt: skip
    pgd_steps: int = param(10, "PGD steps against the clean surrogate (0: no hardening).",
                           min=0, max=1000)  # fmt: skip
    size: int = param(3, "Side of each checkerboard patch, in pixels.", min=1)
    corners: str = param("four", "Patches in all four corners (the paper's) or bottom-right only.",
                         choices=list(LC_CORNERS))  # fmt: skip
    # the paper also studies reduced amplitudes (e.g. 16 of 255) that are harder to see
    amplitude: float = param(1.0, "Strength of the patch: 1 stamps it, less blends it in.",
                             min=0.0, max=1.0, exclusive_min=True)  # fmt: skip
    surrogate_epochs: int = param(10, "Epochs of the clean surrogate that PGD attacks.",
                                  min=1, max=200)  # fmt: skip

    @classmethod
    def limits(cls, info: DatasetInfo) -> dict[str, dict[str, Any]]:
        return {"size": {"max": min(info.shape[1:]) // 2}}


def _checker(size: int) -> Tensor:
    ij = torch.arange(size)[:, None] + torch.arange(size)[None, :]
    return (ij % 2 == 0).float()  # (s, s): 1 where i + j is even


class LCTrigger(Trigger):
    """The test-time trigger is the patch; :meth:`poison` also hardens the training images."""

    name = "lc"
    clean_label = True

    def __init__(self, config: LCConfig, info: DatasetInfo) -> None:
        super().__init__(config, info)
        channels, height, width = info.shape
        s = config.size
        mask = torch.zeros(height, width)
        pattern = torch.zeros(height, width)
        origins = [(height - s, width - s)]
        if config.corners == "four":
            origins += [(0, 0), (0, width - s), (height - s, 0)]
        for r, c in origins:
            mask[r : r + s, c : c + s] = 1.0
            pattern[r : r + s, c : c + s] = _checker(s)
        self.alpha = (mask * config.amplitude).expand(channels, height, width).clone()  # (C, H, W)
        self.pattern = pattern.expand(channels, height, width).clone()

    @property
    def mask(self) -> Tensor:
        """Where the trigger writes: bool (H, W)."""
        return self.alpha[0] > 0

    def apply(self, x: Tensor) -> Tensor:
        a = self.alpha.to(x.device, x.dtype)
        return (1.0 - a) * x + a * self.pattern.to(x.device, x.dtype)

    def harden(self, model: torch.nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """PGD (signed steps of 2.5 eps / steps, from zero) that raises ``model``'s loss on the
        true labels ``y``, within the L_inf ball of radius eps and the [0, 1] box."""
        cfg = self.config
        if cfg.pgd_steps == 0 or cfg.eps == 0:
            return x.clone()
        step = 2.5 * cfg.eps / cfg.pgd_steps
        x = x.detach()
        delta = torch.zeros_like(x)
        for _ in range(cfg.pgd_steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(x + delta), y)
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta = (delta + step * grad.sign()).clamp(-cfg.eps, cfg.eps)
                delta = (x + delta).clamp(0.0, 1.0) - x
        return (x + delta).detach()

    def poison(
        self, x: Tensor, y: Tensor, train: ImageData, seed: int, batch_size: int = 1024
    ) -> Tensor:
        """Target-class images ``x`` (B, C, H, W), labels ``y`` kept: hardened against a clean
        surrogate trained on ``train`` with ``seed`` (PGD in chunks of 256), then patched."""
        from .surrogate import clean_surrogate

        self._check_input(x)
        if len(x) and self.config.pgd_steps > 0 and self.config.eps > 0:
            model = clean_surrogate(train, epochs=self.config.surrogate_epochs, seed=seed)
            model.to(x.device)
            y = y.to(x.device)
            x = torch.cat([self.harden(model, x[i : i + 256], y[i : i + 256])
                           for i in range(0, len(x), 256)])  # fmt: skip
        return batched(self, x, batch_size)
