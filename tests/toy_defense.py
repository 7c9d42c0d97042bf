"""A defence written outside sau_core, the way a user adds one: this module and one registry
entry (``DEFENSES["last_layer"] = DEFENSE``), nothing else. It fine-tunes only the classifier's
last linear layer on the clean set (a weak defence, here to show the path, not to clean models).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sau_core.config import ParamConfig, param
from sau_core.defenses.base import (
    Defense,
    DefenseResult,
    Paper,
    RoundLoop,
    RunContext,
    cross_entropy,
    defense_run,
    trainable_copy,
)


@dataclass(frozen=True)
class LastLayerConfig(ParamConfig):
    """Settings of the toy defence."""

    label = "last-layer"
    kind = "defence"

    rounds: int = param(2, "passes over the clean set", min=1, max=100)
    batch_size: int = param(64, "clean images per step", min=1, max=8192)
    lr: float = param(0.05, "SGD learning rate of the last layer", min=0.0, max=10.0)
    seed: int = param(0, "seed for shuffling and the live evaluation subsets", min=0)
    eval_size: int = param(200, "test images per live evaluation (0: all)", min=0)


def _last_linear(model: nn.Module) -> nn.Linear:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError("the last-layer defence needs a linear layer; this model has none")
    return layers[-1]


@defense_run("last_layer", LastLayerConfig)
def last_layer(ctx: RunContext) -> DefenseResult:
    h = trainable_copy(ctx.h0)
    head = _last_linear(h)
    for p in h.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.SGD(head.parameters(), lr=ctx.config.lr)

    def step(x, y, gen):
        loss = cross_entropy(h, x, y, False)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss, {"L_ce": loss}

    looped = RoundLoop(h, optimizer, step, lambda: h).run(ctx)
    return ctx.finish(h, looped)


DEFENSE = Defense(
    name="last_layer",
    title="Last layer: fine-tune the classifier head only",
    paper=Paper("SAU Lab tests", "A toy defence that shows the registry's path", "none", ""),
    config=LastLayerConfig,
    run=last_layer,
    summary="Fine-tunes only the last linear layer on the clean set.",
    weakness="The trigger's features live below the head; re-fitting the head rarely moves them.",
    check_model=_last_linear,
)
