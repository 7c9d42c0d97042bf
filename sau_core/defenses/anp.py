"""ANP: Adversarial Neuron Pruning (Wu and Wang, NeurIPS 2021, https://arxiv.org/abs/2110.14430).

Backdoored models are sensitive to small perturbations of their neurons: perturbed, they fall
into the backdoor's class even without a trigger. ANP gives every neuron (here: every channel of
every BatchNorm layer, as the paper does) a mask m in [0, 1] and a perturbation of its scale
(delta) and shift (xi), both within ``eps``; per batch it first moves the perturbations to raise
the clean loss (signed gradient steps), then moves the masks to lower
``alpha * L(m, 0) + (1 - alpha) * L(m, delta, xi)``, and clips them to [0, 1]. Neurons whose
mask ends below ``threshold`` are pruned (their BatchNorm scale set to zero); nothing else of
the model changes. The settings are the paper's (eps 0.4, one perturbation step, alpha 0.2,
mask learning rate 0.2 with momentum 0.9, threshold 0.2).

The masks act on each BatchNorm's output: with scale g and shift b, an output y becomes
``(y - b) * (m + delta) + b * (1 + xi)``, the paper's layer. The masks are optimised with
BatchNorm on batch statistics (training mode); the running statistics are never updated
(momentum 0), so the live evaluation and the pruned model use the backdoored model's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ParamConfig, param
from .base import Defense, DefenseResult, Paper, RoundLoop, RunContext, defense_run, frozen_copy

__all__ = ["ANPConfig", "DEFENSE", "NeuronMasks", "prune_by_threshold", "adversarial_prune"]


@dataclass(frozen=True)
class ANPConfig(ParamConfig):
    """ANP's settings (the paper's; BackdoorBench runs 2,000 batches of 128: 100 rounds over
    CIFAR-10's 5%)."""

    label = "ANP"
    kind = "defence"

    rounds: int = param(100, "passes over the clean set optimising the masks", min=1, max=10000)
    batch_size: int = param(128, "clean images per step", min=1, max=8192)
    lr: float = param(0.2, "learning rate of the masks (SGD, momentum 0.9)", min=0.0, max=10.0)
    eps: float = param(0.4, "bound of the neuron perturbations", min=0.0, max=1.0)
    pgd_steps: int = param(1, "perturbation steps per batch", min=0, max=100)
    alpha: float = param(0.2, "weight of the natural loss against the perturbed one", min=0.0,
                         max=1.0)  # fmt: skip
    threshold: float = param(0.2, "prune the neurons whose mask ends below this", min=0.0,
                             max=1.0)  # fmt: skip
    seed: int = param(0, "seed for shuffling, perturbation starts and the evaluation subsets",
                      min=0)  # fmt: skip
    eval_size: int = param(1000, "test images per live evaluation each round (0: all)", min=0)


class NeuronMasks(nn.Module):
    """A frozen model with a mask and two perturbations per BatchNorm channel.

    ``mode``: "natural" (masks only), "perturbed" (masks and perturbations) or "pruned" (masks
    replaced by 0/1 at ``threshold``). The model's own weights never change here.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not self.bns:
            raise ValueError(
                "ANP perturbs and prunes the channels of BatchNorm layers, and this model has "
                "none; choose another defence (SAU, FT and i-BAU work on any model)"
            )
        self.masks = nn.ParameterList([nn.Parameter(torch.ones(b.num_features)) for b in self.bns])
        self.noise_w = nn.ParameterList([nn.Parameter(torch.zeros(b.num_features))
                                         for b in self.bns])  # fmt: skip
        self.noise_b = nn.ParameterList([nn.Parameter(torch.zeros(b.num_features))
                                         for b in self.bns])  # fmt: skip
        self.mode, self.threshold = "natural", 0.0
        self._handles = [b.register_forward_hook(self._hook(i)) for i, b in enumerate(self.bns)]

    def _hook(self, i: int):
        def hook(module, inputs, out):
            shape = (1, -1) + (1,) * (out.dim() - 2)
            m = self.masks[i]
            if self.mode == "pruned":
                m = (m.detach() >= self.threshold).to(out.dtype)
            b = module.bias if module.bias is not None else torch.zeros_like(m)
            coeff_w, coeff_b = m, torch.ones_like(m)
            if self.mode == "perturbed":
                coeff_w = m + self.noise_w[i]
                coeff_b = 1 + self.noise_b[i]
            b = b.view(shape)
            return (out - b) * coeff_w.view(shape) + b * coeff_b.view(shape)

        return hook

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def close(self) -> None:
        for h in self._handles:
            h.remove()

    def noise(self) -> list[nn.Parameter]:
        return [*self.noise_w, *self.noise_b]

    def mask_values(self) -> Tensor:
        return torch.cat([m.detach().flatten() for m in self.masks])


class _Pruned(nn.Module):
    def __init__(self, masks: NeuronMasks) -> None:
        super().__init__()
        self.m = masks

    def forward(self, x: Tensor) -> Tensor:
        mode = self.m.mode
        self.m.mode = "pruned"
        try:
            return self.m(x)
        finally:
            self.m.mode = mode


def prune_by_threshold(model: nn.Module, masks: list[Tensor], threshold: float) -> list[int]:
    """In place: zero, in ``model``'s BatchNorm layers (in module order), the scale of
    every channel whose mask is below ``threshold``; returns the count pruned per layer."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    counts = []
    with torch.no_grad():
        for bn, m in zip(bns, masks, strict=True):
            cut = m.to(bn.weight.device) < threshold
            bn.weight[cut] = 0
            counts.append(int(cut.sum()))
    return counts


@defense_run("anp", ANPConfig)
def adversarial_prune(ctx: RunContext) -> DefenseResult:
    """Adversarial Neuron Pruning of the backdoored model (the arguments are every defence's:
    :func:`~sau_core.defenses.base.defense_run`); the live evaluation and the result are the
    model pruned at ``threshold``. ``notes``: the neurons pruned per BatchNorm layer and the
    final masks' summary."""
    config, device, h0 = ctx.config, ctx.device, ctx.h0
    # eval mode except inside a step (evaluating a module in training mode would switch it, and
    # every module inside, back); BatchNorm's running statistics frozen: momentum 0
    masks = NeuronMasks(frozen_copy(h0, device)).to(device).eval()
    for bn in masks.bns:
        bn.momentum = 0.0
    masks.threshold = config.threshold
    opt_masks = torch.optim.SGD(list(masks.masks), lr=config.lr, momentum=0.9)
    pruned_view = _Pruned(masks).eval()

    def step(x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, dict]:
        masks.model.train()  # batch statistics (running ones frozen)
        try:
            return _step(x, y, gen)
        finally:
            masks.model.eval()

    def _step(x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, dict]:
        if config.eps > 0:  # random start in the eps box, then ascend the loss
            with torch.no_grad():
                for p in masks.noise():
                    p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1).mul_(config.eps))
            masks.mode = "perturbed"
            for _ in range(config.pgd_steps):
                loss = F.cross_entropy(masks(x), y)
                grads = torch.autograd.grad(loss, masks.noise())
                with torch.no_grad():
                    for p, g in zip(masks.noise(), grads, strict=True):
                        p.add_(g.sign(), alpha=config.eps / config.pgd_steps)
                        p.clamp_(-config.eps, config.eps)
        opt_masks.zero_grad(set_to_none=True)
        loss_rob = None
        if config.eps > 0 and config.alpha < 1:
            masks.mode = "perturbed"
            loss_rob = F.cross_entropy(masks(x), y)
        masks.mode = "natural"
        loss_nat = F.cross_entropy(masks(x), y)
        loss = config.alpha * loss_nat + (1 - config.alpha) * loss_rob if loss_rob is not None \
            else loss_nat  # fmt: skip
        loss.backward()
        for p in masks.noise():
            p.grad = None
        opt_masks.step()
        with torch.no_grad():
            for m in masks.masks:
                m.clamp_(0, 1)
        terms = {"L_natural": loss_nat}
        if loss_rob is not None:
            terms["L_perturbed"] = loss_rob
        return loss, terms

    def extras(r: int) -> dict:
        values = masks.mask_values()
        return {"below_threshold": int((values < config.threshold).sum()),
                "neurons": int(values.numel())}  # fmt: skip

    loop = RoundLoop(masks, opt_masks, step, lambda: pruned_view, extras=extras)
    try:
        looped = loop.run(ctx)
        final_masks = [m.detach().cpu() for m in masks.masks]
    finally:
        masks.close()
    out = frozen_copy(h0, device)
    counts = prune_by_threshold(out, final_masks, config.threshold)
    values = torch.cat(final_masks)
    notes = {"pruned_per_layer": counts, "pruned": sum(counts), "neurons": int(values.numel()),
             "mask_min": float(values.min()), "mask_mean": float(values.mean())}  # fmt: skip
    return ctx.finish(out, looped, notes)


def _check(model: nn.Module) -> None:
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ValueError("ANP prunes BatchNorm channels; this model has no BatchNorm layer")


DEFENSE = Defense(
    name="anp",
    title="ANP: adversarial neuron pruning",
    paper=Paper(
        "Wu, Wang",
        "Adversarial Neuron Pruning Purifies Backdoored Deep Models",
        "NeurIPS 2021",
        "2110.14430",
    ),
    config=ANPConfig,
    run=adversarial_prune,
    summary=(
        "Shakes every neuron a little, in the direction that hurts most, and learns which "
        "neurons the model can do without: a backdoored model collapses into its target class "
        "when the backdoor's neurons are disturbed, so those are the ones to switch off. It then "
        "removes the neurons whose learned mask is low and changes nothing else."
    ),
    weakness=(
        "Pruning costs clean accuracy (BackdoorBench, CIFAR-10: ACC 78-86% against 91-93% "
        "before), and the threshold trades one against the other; it only prunes BatchNorm "
        "channels, so a model without BatchNorm cannot use it."
    ),
    check_model=_check,
)
