"""Train a (backdoored or clean) classifier on a resident image set.

SGD with momentum and a cosine schedule by default; augmentation runs on the device, batched
(random crop with 4-pixel padding and horizontal flip for natural images, none for digits);
bf16 autocast and channels-last on CUDA; progress goes to a callback as typed events; a stop
flag is honoured within one batch. CPU runs with the same seed are repeatable.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ParamConfig, param
from .data import ImageData
from .device import autocast, cpu_copy, describe, memory_format, pick_device
from .events import (
    Callback,
    Evaluated,
    Finished,
    NonFiniteLoss,
    Started,
    StopFlag,
    TrainBatch,
    TrainEpoch,
    emit,
)
from .lab.recipes import recipe
from .metrics import Evaluation, evaluate
from .state import TrainState

__all__ = ["TrainConfig", "TrainResult", "TrainState", "augment", "default_train_config", "train"]


@dataclass(frozen=True)
class TrainConfig(ParamConfig):
    """How ``sau attack`` trains a model (SGD or Adam, a schedule, on-device augmentation)."""

    label = "train"
    kind = "training"

    epochs: int = param(30, "passes over the training set", min=1, max=1000)
    batch_size: int = param(128, "images per SGD step", min=1, max=8192)
    lr: float = param(0.01, "initial learning rate", min=1e-6, max=10.0)
    momentum: float = param(0.9, "SGD momentum", min=0.0, max=0.999)
    weight_decay: float = param(5e-4, "L2 weight decay", min=0.0, max=1.0)
    optimizer: str = param("sgd", "optimiser", choices=["sgd", "adam"])
    schedule: str = param("cosine", "learning-rate schedule", choices=["cosine", "constant"])
    augment: str = param(
        "auto",
        "on-device augmentation: auto = crop+flip for natural images, none for digits",
        choices=["auto", "none", "crop", "crop_flip"],
    )
    crop_pad: int = param(
        0,
        "zero padding of random crops in pixels; 0 = an eighth of the image side "
        "(4 at 32x32, as on CIFAR-10; 2 at 16x16)",
        min=0,
        max=64,
    )
    label_smoothing: float = param(
        0.0,
        "label smoothing of the training loss (0: plain cross entropy); keeps the "
        "model's softmax away from exactly 0 and 1",
        min=0.0,
        max=0.5,
    )
    amp: bool = param(True, "bf16 autocast on CUDA (ignored on CPU)")
    channels_last: bool = param(True, "channels-last memory on CUDA")
    seed: int = param(0, "seed for shuffling and augmentation", min=0)
    eval_every: int = param(1, "epochs between evaluations (0: only at the end)", min=0)


def default_train_config(dataset: str, **overrides) -> TrainConfig:
    """The training defaults of a data set (its :class:`~sau_core.lab.recipes.Recipe`), with
    ``overrides`` applied and validated."""
    base = dict(recipe(dataset).train)
    base.update(overrides)
    return TrainConfig(**base).validate()


def augment(x: Tensor, mode: str, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Batched random crop (zero padding ``pad``) and horizontal flip, on ``x``'s device.

    ``mode``: "none", "crop" or "crop_flip". Random numbers come from ``generator`` (on CPU for
    repeatable runs) and are moved to the device. Returns a new (B, C, H, W) tensor.
    """
    if mode == "none":
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])[:, None, :, None]  # (B,1,H,1)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])[:, None, None, :]  # (B,1,1,W)
    out = padded.gather(2, rows.expand(b, x.shape[1], h, padded.shape[3]))
    out = out.gather(3, cols.expand(b, x.shape[1], h, w))
    if mode == "crop_flip":
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        out = torch.where(flip[:, None, None, None], out.flip(3), out)
    return out


@dataclass
class TrainResult:
    model: nn.Module
    history: list[TrainEpoch]
    stopped: bool
    final: Evaluation | None
    elapsed: float
    images_per_s: float


def _resolve_augment(mode: str, data: ImageData) -> str:
    if mode != "auto":
        return mode
    return "crop_flip" if data.info.natural else "none"


def train(
    model: nn.Module,
    data: ImageData,
    config: TrainConfig | None = None,
    *,
    device: str | torch.device | None = None,
    eval_set: tuple[Tensor, Tensor] | None = None,
    backdoor=None,
    callback: Callback | None = None,
    stop: StopFlag | None = None,
    resume: TrainState | None = None,
    on_state: Callable[[TrainState], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data`` (labels as given: poisoned data trains a backdoor).

    Args:
        model: a classifier taking images in [0, 1].
        data: the training set (resident tensors).
        config: :class:`TrainConfig` (default: the data set's defaults).
        device: "cuda", "mps", "cpu" or None for the best available.
        eval_set: clean test images and labels (x, y) for per-epoch ACC, optional.
        backdoor: a :class:`~sau_core.attacks.BackdoorTest` for per-epoch ASR/RA, optional.
        callback: receives :class:`Started`, :class:`TrainBatch`, :class:`TrainEpoch`, :class:`Finished`.
        stop: a flag with ``is_set()``; checked before every batch.
        resume: a :class:`TrainState` from ``on_state`` of an earlier run with the same model,
            data and config: training continues at epoch ``resume.epoch + 1`` and ends with the
            weights the uninterrupted run gives (bit for bit on a CPU with the same threads).
        on_state: called with a :class:`TrainState` (CPU copies) after every completed epoch.

    Returns:
        :class:`TrainResult` with the (same) model, per-epoch history and the final evaluation.
    """
    config = (config or default_train_config(data.info.name)).validate()
    device = pick_device(device)
    fmt = memory_format(device, config.channels_last)
    model.to(device=device, memory_format=fmt)
    mode = _resolve_augment(config.augment, data)
    pad = config.crop_pad or max(1, data.info.shape[1] // 8)
    gen = torch.Generator().manual_seed(config.seed)

    x_all, y_all = data.x.to(device), data.y.to(device)
    n = len(y_all)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    else:
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        if config.schedule == "cosine"
        else None
    )
    history: list[TrainEpoch] = []
    first, step, elapsed_before = 1, 0, 0.0
    if resume is not None:
        if resume.config != config.to_dict():
            raise ValueError("the saved training state was made with other training settings")
        if not 0 <= resume.epoch <= config.epochs:
            raise ValueError(f"the saved training state is after epoch {resume.epoch} of "
                             f"{config.epochs}")  # fmt: skip
        try:
            model.load_state_dict(resume.model)
            opt.load_state_dict(resume.optimizer)
            if sched is not None and resume.scheduler is not None:
                sched.load_state_dict(resume.scheduler)
            gen.set_state(resume.generator)
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
            raise ValueError(f"the saved training state does not fit this model: {err}") from None
        history = list(resume.history)
        first, step, elapsed_before = (
            resume.epoch + 1,
            resume.epoch * steps_per_epoch,
            resume.elapsed,
        )
    emit(callback, Started("train", total, describe(device), config.to_dict(), first - 1))

    start, seen, stopped = time.perf_counter() - elapsed_before, 0, False
    for epoch in range(first, config.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for i in range(0, n, config.batch_size):
            if stop is not None and stop.is_set():
                stopped = True
                break
            idx = perm[i : i + config.batch_size]
            xb = augment(x_all[idx], mode, gen, pad).contiguous(memory_format=fmt)
            yb = y_all[idx]
            with autocast(device, config.amp):
                logits = model(xb)
                loss = F.cross_entropy(logits, yb, label_smoothing=config.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
            seen += len(idx)
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == yb).sum()
            if callback is not None:
                emit(
                    callback, TrainBatch(epoch, step, total, loss.item(), opt.param_groups[0]["lr"])
                )
        if stopped:
            break
        if not math.isfinite(float(loss_sum)):
            raise NonFiniteLoss(
                f"the training loss is not finite in epoch {epoch}: the model diverged. The run "
                "stops here; try a smaller learning rate"
            )
        elapsed = time.perf_counter() - start
        ev = None
        last = epoch == config.epochs
        if eval_set is not None and (
            last or (config.eval_every and epoch % config.eval_every == 0)
        ):
            ev = evaluate(model, *eval_set, backdoor, device=device, confusion=False)
        rec = TrainEpoch(
            epoch=epoch,
            epochs=config.epochs,
            loss=float(loss_sum) / n,
            train_acc=float(correct) / n,
            lr=opt.param_groups[0]["lr"],
            elapsed=elapsed,
            eta=elapsed / step * (total - step),
            acc=ev.acc if ev else None,
            asr=ev.asr if ev else None,
            ra=ev.ra if ev else None,
        )
        history.append(rec)
        emit(callback, rec)
        if on_state is not None:
            on_state(TrainState(epoch, cpu_copy(model.state_dict()), cpu_copy(opt.state_dict()),
                                None if sched is None else copy.deepcopy(sched.state_dict()),
                                gen.get_state(), list(history), time.perf_counter() - start,
                                config.to_dict()))  # fmt: skip

    model.eval()
    elapsed = time.perf_counter() - start
    final = None
    if eval_set is not None:
        final = evaluate(
            model, *eval_set, backdoor, device=device, num_classes=data.info.num_classes
        )
    emit(callback, Finished("train", stopped, elapsed, None if final is None else _ev(final)))
    return TrainResult(model, history, stopped, final, elapsed, seen / max(elapsed, 1e-9))


def _ev(e: Evaluation) -> Evaluated:
    return Evaluated(e.acc, e.asr, e.ra, e.per_class_asr)


def with_overrides(config: TrainConfig, **changes) -> TrainConfig:
    return replace(config, **{k: v for k, v in changes.items() if v is not None}).validate()
