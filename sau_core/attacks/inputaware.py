"""Input-aware dynamic backdoor (Nguyen and Tran, NeurIPS 2020, arXiv 2010.08138): a generator
makes a different trigger (a pattern and a mask) for every image. It is trained jointly with a
classifier so that an image with its own trigger goes to the target, while an image carrying
another image's trigger ("cross" mode) keeps its label, and with a diversity loss that makes
different images get different triggers. Triggers are thus input-specific and do not transfer.

SAU Lab trains the generator this way, jointly with a clean-architecture surrogate classifier, when
the backdoor is planted (:func:`prepare`, through :func:`~sau_core.attacks.prepare_spec`), and carries its weights in the spec (``generator``: a
``data:`` URI of safetensors, never unpickled). The victim is then trained on data poisoned with
the frozen generator, with as many cross samples as poisoned ones. The paper trains the victim
itself jointly with the generator; here the victim sees the generator's triggers as static
poison, which is how a backdoored model reaches SAU Lab's defences anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import param
from ..data import DatasetInfo, ImageData
from .base import TENSORS_URI, Trigger, _Config, read_tensors_uri, tensors_uri

GENERATOR_URI = TENSORS_URI  # the spec's data: URI of the generator's weights
WIDTH = 16


class TriggerGenerator(nn.Module):
    """x (B, 3, H, W) in [0, 1] -> (pattern (B, 3, H, W) in [0, 1], mask (B, 1, H, W) in [0, 1]);
    fully convolutional, so one generator serves any image size."""

    def __init__(self, width: int = WIDTH) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.pattern = nn.Conv2d(width, 3, 3, padding=1)
        self.mask = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return torch.sigmoid(self.pattern(h)), torch.sigmoid(self.mask(h))


def _as3(x: Tensor) -> Tensor:
    return x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1)


def stamp(x: Tensor, pattern: Tensor, mask: Tensor) -> Tensor:
    """``(1 - mask) x + mask pattern`` for images of 1 or 3 channels (grey: the pattern's mean)."""
    if x.shape[1] == 1:
        pattern = pattern.mean(1, keepdim=True)
    return (1 - mask) * x + mask * pattern


@dataclass(frozen=True)
class InputAwareConfig(_Config):
    """Input-aware (Nguyen & Tran, 2020): per-image triggers from a generator, with cross mode."""

    attack: ClassVar[str] = "inputaware"

    # the paper's CIFAR-10 mask density is 0.032; on 8x8 to 32x32 digits it is a handful of pixels
    density: float = param(0.05, "Largest mean of the mask: the share of each image the trigger "
                           "may cover.", min=0.0, max=1.0, exclusive_min=True)  # fmt: skip
    diversity: float = param(1.0, "Weight of the diversity loss (different images, different "
                             "triggers).", min=0.0, max=100.0)  # fmt: skip
    epochs: int = param(10, "Epochs of the joint training of generator and surrogate.",
                        min=1, max=200)  # fmt: skip
    cross_ratio: float = param(1.0, "Cross samples (another image's trigger, label kept) per "
                               "poisoned image.", min=0.0, max=10.0)  # fmt: skip
    # computed when the backdoor is planted; a checkpoint's spec carries it
    generator: str = param("", "The trigger generator (trained when the backdoor is planted).",
                           path=True)  # fmt: skip


def generator_uri(gen: TriggerGenerator) -> str:
    """The generator's weights as the ``data:`` URI an Input-aware spec carries."""
    return tensors_uri(gen.state_dict())


def read_generator(uri: str) -> TriggerGenerator:
    """The generator in an Input-aware ``data:`` URI; ValueError otherwise (never unpickled)."""
    what = "inputaware parameter 'generator'"
    state = read_tensors_uri(uri, what, "generator")
    gen = TriggerGenerator()
    try:
        gen.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{what} does not fit the generator ({str(err)[:120]})") from None
    if not all(torch.isfinite(v).all() for v in state.values()):
        raise ValueError(f"{what} holds values that are not finite")
    return gen.eval().requires_grad_(False)


def _others(n: int, generator: torch.Generator) -> Tensor:
    """For each of ``n`` >= 2 images, the index of another one: a random derangement."""
    shift = int(torch.randint(1, n, (1,), generator=generator))
    perm = torch.randperm(n, generator=generator)
    return perm.roll(shift)[torch.argsort(perm)]


class InputAwareTrigger(Trigger):
    """Each image gets the trigger the generator makes for it; :meth:`cross` gives an image the
    trigger made for another (its label is kept)."""

    name = "inputaware"
    has_cross = True
    per_image = True

    def __init__(self, config: InputAwareConfig, info: DatasetInfo) -> None:
        super().__init__(config, info)
        if not config.generator:
            raise ValueError(
                "the inputaware trigger has no generator yet: it is trained with a clean model "
                "when the backdoor is planted (sau attack --attack inputaware, or the Attack page)"
            )
        self.generator = read_generator(config.generator)

    @property
    def cross_ratio(self) -> float:
        return self.config.cross_ratio

    def parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The pattern (B, 3, H, W) and mask (B, 1, H, W) made for each image of ``x``."""
        gen = self.generator.to(x.device)
        with torch.no_grad():
            pattern, mask = gen(_as3(x.float()))
        return pattern.to(x.dtype), mask.to(x.dtype)

    def apply(self, x: Tensor) -> Tensor:
        pattern, mask = self.parts(x)
        return stamp(x, pattern, mask).clamp_(0.0, 1.0)

    def cross(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """``x`` with triggers made for other images of ``x``: a random derangement drawn from
        ``generator`` (a lone image gets the trigger of its mirror image)."""
        self._check_input(x)
        if len(x) == 0:
            return x.clone()
        if len(x) == 1:
            other = torch.flip(x, dims=(3,))
        else:
            other = x[_others(len(x), generator).to(x.device)]
        pattern, mask = self.parts(other)
        return stamp(x, pattern, mask).clamp_(0.0, 1.0)

    def cross_set(self, x: Tensor, generator: torch.Generator, batch_size: int = 1024) -> Tensor:
        """Cross samples over the whole set at once (the derangement spans every image, so any
        batch size gives the same samples); the generator runs in batches."""
        if len(x) < 2 or len(x) <= batch_size:
            return self.cross(x, generator)
        other = _others(len(x), generator).to(x.device)
        out = torch.empty_like(x)
        for i in range(0, len(x), batch_size):
            pattern, mask = self.parts(x[other[i : i + batch_size]])
            out[i : i + batch_size] = stamp(x[i : i + batch_size], pattern, mask).clamp_(0.0, 1.0)
        return out


def train_generator(train: ImageData, config: InputAwareConfig, target: int | None, seed: int,
                    batch_size: int = 64) -> tuple[TriggerGenerator, nn.Module]:  # fmt: skip
    """The generator trained jointly with a ``small_cnn`` classifier on ``train`` for
    ``config.epochs`` (per batch: a tenth backdoored with their own triggers, a tenth crossed with
    others', the rest clean; plus the diversity and mask-density losses). Returns both, eval."""
    from ..models import create_model
    from .surrogate import SURROGATE_ARCH

    torch.manual_seed(seed)  # the generator's initial weights
    g = torch.Generator().manual_seed(seed)
    device = train.x.device
    gen = TriggerGenerator().to(device)
    clf = create_model(SURROGATE_ARCH, train.info, seed=seed).to(device)
    opt = torch.optim.Adam([*gen.parameters(), *clf.parameters()], lr=1e-3)
    k = train.info.num_classes
    n = len(train)
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=g).to(device)
        for i in range(0, n - 1, batch_size):
            idx = order[i : i + batch_size]
            x, y = train.x[idx], train.y[idx]
            if len(x) < 4:
                continue
            nb = max(1, len(x) // 10)
            other = x[torch.roll(torch.arange(len(x), device=device), 1)]
            p, m = gen(_as3(x))
            p2, m2 = gen(_as3(other))
            y_bd = torch.full_like(y[:nb], target) if target is not None else (y[:nb] + 1) % k
            x_bd = stamp(x[:nb], p[:nb], m[:nb])
            x_cr = stamp(x[nb : 2 * nb], p2[nb : 2 * nb], m2[nb : 2 * nb])
            inputs = torch.cat([x_bd, x_cr, x[2 * nb :]])
            labels = torch.cat([y_bd, y[nb:]])
            loss = F.cross_entropy(clf(inputs), labels)
            spread_x = (x - other).flatten(1).norm(dim=1)
            spread_t = (p - p2).flatten(1).norm(dim=1)
            loss = loss + config.diversity * (spread_x / (spread_t + 1e-3)).mean()
            loss = loss + 10.0 * F.relu(m.mean() - config.density)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return gen.eval().requires_grad_(False), clf.eval().requires_grad_(False)


def prepare(config: InputAwareConfig, train: ImageData, target: int | None, seed: int) -> str:
    """The generator, trained jointly with a surrogate on ``train``, as the URI its spec carries
    (:func:`~sau_core.attacks.prepare_spec`)."""
    gen, _ = train_generator(train, config, target, seed)
    return generator_uri(gen)
