"""The re-tuning (re-activation) test: does a defended model learn its backdoor back faster
than a model that never had one?

Min, Qin, Zhang, Shen and Cheng (NeurIPS 2024, arXiv 2410.09838, "Uncovering, Explaining, and
Mitigating the Superficial Safety of Backdoor Defense") fine-tune a purified model on a small set
holding a few poisoned samples (their "retuning attack"; the example in their repository: 2% of
CIFAR-10's training set, 1,000 images, of which 5 poisoned, 5 epochs, SGD at learning rate 0.01)
and find that purified models return to a high ASR within those epochs, while a model trained
without poison does not: the backdoor was hidden, not removed. SAU Lab runs the same test.
Digits' training split has 1,347 images (2% would be 27, too few to fine-tune on), so the set
here is ``clean`` clean training images (default 500) plus their 5 poisoned ones, with their
epochs and learning rate; the poisoned samples are made by the attack's own recipe and label
rule.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import nn

from ..attacks import AttackSpec, BackdoorTest, poison_train
from ..config import ParamConfig, param
from ..data import ImageData, Split
from ..events import TrainEpoch
from ..train import TrainConfig, train


@dataclass(frozen=True)
class ReactivationConfig(ParamConfig):
    """Settings of the re-tuning test (defaults: the paper's poisoned count, epochs and rate)."""

    label: ClassVar[str] = "re-tuning"
    kind: ClassVar[str] = "probe"

    epochs: int = param(5, "Epochs of fine-tuning on the re-tuning set.", min=1, max=100)
    poisoned: int = param(5, "Poisoned samples in the re-tuning set.", min=1, max=10000)
    clean: int = param(500, "Clean training images in the re-tuning set.", min=1, max=1000000)
    lr: float = param(0.01, "Learning rate of the fine-tuning (SGD, momentum 0.9).",
                      min=0.0, max=1.0, exclusive_min=True)  # fmt: skip
    batch_size: int = param(64, "Images per step.", min=1, max=8192)
    back: float = param(0.5, "ASR at which the backdoor counts as back.", min=0.0, max=1.0,
                        exclusive_min=True)  # fmt: skip
    seed: int = param(0, "Seed of the re-tuning set and its shuffling.", min=0)


def retune_set(train_data: ImageData, spec: AttackSpec, config: ReactivationConfig,
               counts: dict | None = None) -> ImageData:  # fmt: skip
    """``config.clean`` clean training images and ``config.poisoned`` poisoned ones (the attack's
    trigger and label rule; clean-label attacks poison target-class images and keep their
    labels), drawn with ``config.seed`` from the training split; cross samples of attacks that
    have them (WaNet, Input-aware) come with the poison, as the attack makes them. ``counts``,
    when given, gets the numbers actually used ("poisoned" is fewer than asked when a clean-label
    attack finds fewer target-class images in the set)."""
    n = min(len(train_data), config.clean + config.poisoned)
    g = torch.Generator().manual_seed(config.seed)
    idx = torch.randperm(len(train_data), generator=g)[:n].sort().values
    subset = ImageData(train_data.x[idx], train_data.y[idx], train_data.info)
    ratio = min(1.0, config.poisoned / n)
    poisoned = poison_train(subset, replace(spec, poison_ratio=ratio, seed=config.seed))
    if counts is not None:
        counts.update(images=n, poisoned=len(poisoned.poison_idx), cross=len(poisoned.cross_idx))
    return poisoned.data


@dataclass
class Reactivation:
    """ASR per re-tuning epoch (index 0: before any), ACC per epoch, and the first epoch at which
    ASR reached ``back`` (None: not within the epochs)."""

    asr: list[float]
    acc: list[float]
    back_at: int | None
    seconds: float

    def to_dict(self) -> dict:
        return {"asr": self.asr, "acc": self.acc, "back_at": self.back_at,
                "seconds": round(self.seconds, 2)}  # fmt: skip


def first_back(asr: list[float], back: float) -> int | None:
    """The first epoch (index) at which ``asr`` reaches ``back``; None when it never does."""
    return next((i for i, a in enumerate(asr) if a >= back), None)


def retune(
    model: nn.Module,
    split: Split,
    spec: AttackSpec,
    backdoor: BackdoorTest,
    config: ReactivationConfig | None = None,
    *,
    retune_data: ImageData | None = None,
    before=None,
    device: str | None = None,
) -> Reactivation:
    """Fine-tune a *copy* of ``model`` (the model itself is never changed) on the re-tuning set
    for ``config.epochs`` epochs and measure ASR and ACC on the full test sets after each.
    ``before``: the model's :class:`~sau_core.metrics.Evaluation` on ``split.test`` and
    ``backdoor`` when the caller has it already (epoch 0 of the curve)."""
    import time

    from ..device import pick_device
    from ..metrics import evaluate

    config = config or ReactivationConfig()
    device = pick_device(device)
    start = time.perf_counter()
    data = retune_data if retune_data is not None else retune_set(split.train, spec, config)
    h = copy.deepcopy(model).requires_grad_(True)  # a defence hands its model back frozen
    if before is None:  # the model's evaluation on these test sets, when the caller has none
        before = evaluate(h, split.test.x, split.test.y, backdoor, device=device)
    asr, acc = [float(before.asr)], [float(before.acc)]
    tc = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                     schedule="constant", augment="none", label_smoothing=0.0,
                     seed=config.seed, eval_every=1)  # fmt: skip

    def record(event) -> None:
        if isinstance(event, TrainEpoch) and event.asr is not None:
            asr.append(float(event.asr))
            acc.append(float(event.acc))

    train(h, data, tc, device=device, eval_set=(split.test.x, split.test.y), backdoor=backdoor,
          callback=record)  # fmt: skip
    return Reactivation(asr, acc, first_back(asr, config.back), time.perf_counter() - start)
