"""FT: fine-tune the backdoored model on the defender's clean set.

The plainest defence and the baseline of every paper in the field (Liu, Dolan-Gavitt, Garg
evaluate it beside Fine-Pruning; BackdoorBench's leaderboard lists it first). The settings are
BackdoorBench's for CIFAR-10: 100 epochs of SGD (learning rate 0.01, momentum 0.9, weight decay
5e-4, cosine schedule), batches of 256, the training augmentation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import ParamConfig, param
from ..data import ImageData
from ..train import augment
from .base import (
    Defense,
    DefenseResult,
    Paper,
    RoundLoop,
    RunContext,
    cosine_lr,
    cross_entropy,
    defense_run,
    trainable_copy,
)

__all__ = ["DEFENSE", "FTConfig", "fine_tune", "sgd"]

AUGMENTS = ("auto", "none", "crop", "crop_flip")


@dataclass(frozen=True)
class FTConfig(ParamConfig):
    """Fine-tuning settings (BackdoorBench's for CIFAR-10)."""

    label = "FT"
    kind = "defence"

    rounds: int = param(100, "epochs: passes over the clean set", min=1, max=10000)
    batch_size: int = param(256, "clean images per SGD step", min=1, max=8192)
    lr: float = param(0.01, "initial learning rate", min=0.0, max=10.0)
    momentum: float = param(0.9, "SGD momentum", min=0.0, max=0.999)
    weight_decay: float = param(5e-4, "L2 weight decay", min=0.0, max=1.0)
    schedule: str = param("cosine", "learning-rate schedule over the epochs",
                          choices=["cosine", "constant"])  # fmt: skip
    augment: str = param(
        "auto",
        "random crops (and flips): auto = crop+flip for natural images, none for digits",
        choices=list(AUGMENTS),
    )
    crop_pad: int = param(4, "zero padding of the random crops, in pixels", min=0, max=64)
    train_mode: bool = param(
        True, "BatchNorm on batch statistics while training (as training does)"
    )
    seed: int = param(0, "seed for shuffling, augmentation and the live evaluation subsets", min=0)
    eval_size: int = param(1000, "test images per live evaluation each round (0: all)", min=0)


def sgd(params, config) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)  # fmt: skip


def augment_mode(config, clean: ImageData) -> str:
    if config.augment != "auto":
        return config.augment
    return "crop_flip" if clean.info.natural else "none"


def lr_schedule(config, first: int = 1, rounds: int | None = None) -> Callable[[int], float]:
    """The rate of round r: cosine over ``rounds`` rounds starting at round ``first``."""
    rounds = config.rounds if rounds is None else rounds
    if config.schedule == "constant":
        return lambda r: config.lr
    return lambda r: cosine_lr(config.lr, r - first, rounds)


def ce_step(model: nn.Module, optimizer, config, mode: str):
    """A step function for :class:`RoundLoop`: cross entropy on an augmented batch, one SGD step."""

    def step(x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, dict]:
        x = augment(x, mode, gen, config.crop_pad)
        loss = cross_entropy(model, x, y, config.train_mode)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss, {"L_ce": loss}

    return step


@defense_run("ft", FTConfig)
def fine_tune(ctx: RunContext) -> DefenseResult:
    """Fine-tune a copy of the backdoored model on the clean set (the arguments are every
    defence's: :func:`~sau_core.defenses.base.defense_run`)."""
    h = trainable_copy(ctx.h0)
    optimizer = sgd(h.parameters(), ctx.config)
    step = ce_step(h, optimizer, ctx.config, augment_mode(ctx.config, ctx.clean))
    looped = RoundLoop(h, optimizer, step, lambda: h, lr_schedule(ctx.config)).run(ctx)
    return ctx.finish(h, looped)


DEFENSE = Defense(
    name="ft",
    title="FT: fine-tuning",
    paper=Paper(
        "Liu, Dolan-Gavitt, Garg",
        "Fine-Pruning: Defending Against Backdooring Attacks on Deep Neural Networks",
        "RAID 2018",
        "1805.12185",
    ),
    config=FTConfig,
    run=fine_tune,
    summary=(
        "Keeps training the backdoored model on the defender's clean images with their true "
        "labels, as if training went on. Nothing in it looks for the trigger: it hopes that "
        "clean training overwrites what the trigger relies on."
    ),
    weakness=(
        "Clean images never show the trigger, so the weights that respond to it get little "
        "gradient: triggers spread over the whole image (Blended) usually survive fine-tuning "
        "(BackdoorBench, CIFAR-10: ASR 96% after FT), while a small patch often does not."
    ),
)
