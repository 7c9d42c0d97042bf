"""FP: Fine-Pruning (Liu, Dolan-Gavitt, Garg, RAID 2018, https://arxiv.org/abs/1805.12185).

A backdoor often lives in neurons that clean inputs leave dormant. Fine-Pruning ranks the
channels of the last convolutional layer by their mean activation on the defender's clean
images, prunes them in that order (the most dormant first) while the clean accuracy stays within
a bound of the original, then fine-tunes the pruned model (pruned channels stay pruned).

Here a channel is pruned by zeroing its filter in the last ``Conv2d`` (and, when a BatchNorm
reads that convolution's output directly, its scale and shift, so the channel outputs exactly
zero): the pruned model is an ordinary model of the same architecture. The activation ranked is
that BatchNorm's output after ReLU when there is one (the CNNs here: conv-BN-ReLU), else the
convolution's output (PreAct-ResNets, whose last convolution feeds a residual sum).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import param
from ..data import ImageData
from ..metrics import predict
from .base import Defense, DefenseResult, RoundLoop, RunContext, defense_run, trainable_copy
from .ft import DEFENSE as FT
from .ft import FTConfig, augment_mode, ce_step, lr_schedule, sgd

__all__ = ["DEFENSE", "FPConfig", "LastConv", "channel_activity", "fine_prune", "last_conv"]


@dataclass(frozen=True)
class FPConfig(FTConfig):
    """Fine-Pruning: the pruning bound, then FT's settings for the fine-tuning."""

    label = "FP"

    max_acc_drop: float = param(
        0.1,
        "prune while the clean set's accuracy stays within this of the original (0.1 = 10 points)",
        min=0.0,
        max=1.0,
    )
    max_prune: float = param(0.9, "never prune more than this share of the channels", min=0.0,
                             max=1.0)  # fmt: skip


@dataclass
class LastConv:
    """The last convolution of a model and the BatchNorm that reads its output (if any)."""

    name: str
    conv: nn.Conv2d
    bn_name: str | None
    bn: nn.BatchNorm2d | None

    @property
    def channels(self) -> int:
        return self.conv.out_channels


def last_conv(model: nn.Module, x: Tensor) -> LastConv:
    """The last ``Conv2d`` that runs on ``x`` (a batch, to trace which BatchNorm reads it);
    ValueError when the model has none."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(
            "Fine-Pruning prunes the channels of the last convolutional layer, and this model has "
            "no convolution; choose another defence (FT, NAD needs convolutions too; SAU and "
            "i-BAU work on any model)"
        )
    seen: dict[str, Tensor] = {}
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, o))
               for n, m in convs]  # fmt: skip
    reads: dict[str, list[str]] = {}

    def bn_hook(mod, inputs, out, name):
        for conv_name, conv_out in seen.items():
            if inputs[0] is conv_out:
                reads.setdefault(conv_name, []).append(name)

    handles += [m.register_forward_hook(lambda mod, i, o, n=n: bn_hook(mod, i, o, n))
                for n, m in bns]  # fmt: skip
    try:
        with torch.no_grad():
            model(x[:2])
    finally:
        for h in handles:
            h.remove()
    name = list(seen)[-1] if seen else convs[-1][0]  # the last to run (dicts keep that order)
    conv = dict(convs)[name]
    bn_names = [b for b in reads.get(name, []) if dict(bns)[b].num_features == conv.out_channels]
    bn_name = bn_names[0] if bn_names else None
    return LastConv(name, conv, bn_name, dict(bns)[bn_name] if bn_name else None)


@torch.no_grad()
def channel_activity(model: nn.Module, layer: LastConv, x: Tensor, batch_size: int = 256) -> Tensor:
    """(C,) mean activation of each channel of ``layer`` over the images ``x`` (eval mode):
    after BatchNorm and ReLU when a BatchNorm reads the convolution, else the convolution's."""
    module = layer.bn if layer.bn is not None else layer.conv
    total = torch.zeros(layer.channels, dtype=torch.float64)
    count = 0

    def hook(mod, inputs, out):
        nonlocal count
        a = torch.relu(out) if layer.bn is not None else out
        total.add_(a.float().mean(dim=(2, 3)).sum(0).double().cpu())
        count += a.shape[0]

    handle = module.register_forward_hook(hook)
    model.eval()
    try:
        for i in range(0, len(x), batch_size):
            model(x[i : i + batch_size])
    finally:
        handle.remove()
    return (total / max(count, 1)).float()


def _mask_channels(layer: LastConv, pruned: list[int]) -> None:
    """Zero the pruned channels' filters (and their BatchNorm's scale and shift) in place."""
    if not pruned:
        return
    idx = torch.tensor(pruned, dtype=torch.long, device=layer.conv.weight.device)
    with torch.no_grad():
        layer.conv.weight[idx] = 0
        if layer.conv.bias is not None:
            layer.conv.bias[idx] = 0
        if layer.bn is not None and layer.bn.weight is not None:
            layer.bn.weight[idx] = 0
            layer.bn.bias[idx] = 0


def _accuracy(model: nn.Module, x: Tensor, y: Tensor, device) -> float:
    return float((predict(model, x, device=device) == y.cpu()).float().mean())


def prune_order(model, layer, clean: ImageData, config, device) -> tuple[list[int], list[dict]]:
    """The channels to prune (most dormant first, as many as the accuracy bound allows) and the
    trace of the search: per count pruned, the clean set's accuracy."""
    x, y = clean.x.to(device), clean.y
    activity = channel_activity(model, layer, x)
    order = sorted(range(layer.channels), key=lambda c: (float(activity[c]), c))
    base = _accuracy(model, x, y, device)
    limit = int(config.max_prune * layer.channels)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    trace, keep = [{"pruned": 0, "acc": base}], 0
    for n in range(1, limit + 1):
        _mask_channels(layer, order[n - 1 : n])
        acc = _accuracy(model, x, y, device)
        trace.append({"pruned": n, "acc": acc})
        if acc < base - config.max_acc_drop:
            break
        keep = n
    model.load_state_dict(saved)
    return order[:keep], trace


@defense_run("fp", FPConfig)
def fine_prune(ctx: RunContext) -> DefenseResult:
    """Prune the last convolution's dormant channels within the accuracy bound, then fine-tune
    with them held at zero (the arguments are every defence's:
    :func:`~sau_core.defenses.base.defense_run`). ``notes`` of the result: the channels pruned
    (in order), the layer, and the accuracy trace of the pruning search."""
    config, clean = ctx.config, ctx.clean
    h = trainable_copy(ctx.h0)
    layer = last_conv(h, clean.x[:2].to(ctx.device))
    pruned, trace = prune_order(h, layer, clean, config, ctx.device)  # from h0 and clean alone
    _mask_channels(layer, pruned)
    optimizer = sgd(h.parameters(), config)
    loop = RoundLoop(
        h, optimizer, ce_step(h, optimizer, config, augment_mode(config, clean)), lambda: h,
        lr_schedule(config), after_step=lambda: _mask_channels(layer, pruned),
        extras=lambda r: {"pruned": len(pruned), "channels": layer.channels},
    )  # fmt: skip
    notes = {"layer": layer.name, "channels": layer.channels, "pruned": pruned, "trace": trace}
    return ctx.finish(h, loop.run(ctx), notes)


def _check(model: nn.Module) -> None:
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise ValueError("Fine-Pruning needs a convolutional layer to prune; this model has none")


DEFENSE = Defense(
    name="fp",
    title="FP: Fine-Pruning",
    paper=FT.paper,
    config=FPConfig,
    run=fine_prune,
    summary=(
        "Looks at the last convolutional layer on clean images, removes the channels that stay "
        "quiet there (a backdoor often hides in neurons clean inputs never use) for as long as "
        "clean accuracy holds, then fine-tunes what is left."
    ),
    weakness=(
        "It assumes the backdoor sits in channels that clean images leave dormant. When the "
        "trigger shares its neurons with clean features, pruning stops at the accuracy bound "
        "before it reaches them (BackdoorBench, CIFAR-10: BadNets ASR 57% and Blended 99% "
        "after FP)."
    ),
    check_model=_check,
)
