"""A clean surrogate model for the attacks that need one (LC's hard examples, LF's universal
perturbation): the attacker trains it on the clean training set with its true labels, seeded,
so the same data and seed give the same surrogate and the same poison.
"""

from __future__ import annotations

from torch import nn

from ..data import ImageData

__all__ = ["clean_surrogate"]

SURROGATE_ARCH = "small_cnn"  # the cheapest model of the registry; the attacker's, not the victim's


def clean_surrogate(train: ImageData, *, epochs: int, seed: int) -> nn.Module:
    """``small_cnn`` trained for ``epochs`` on ``train`` (true labels, no trigger), in eval mode
    with gradients off for its parameters, on ``train``'s device. ValueError for ``epochs`` < 1."""
    from ..models import create_model
    from ..train import TrainConfig
    from ..train import train as fit

    if epochs < 1:
        raise ValueError(f"the surrogate needs at least one epoch, got {epochs}")
    model = create_model(SURROGATE_ARCH, train.info, seed=seed)
    config = TrainConfig(epochs=epochs, batch_size=64, lr=0.01, augment="none", seed=seed,
                         eval_every=0, amp=False, channels_last=False)  # fmt: skip
    fit(model, train, config, device=train.x.device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
