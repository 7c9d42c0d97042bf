"""Shared Adversarial Unlearning (SAU): purify a backdoored classifier with a small clean set.

Wei, Zhang, Zha, Wu, "Shared Adversarial Unlearning: Backdoor Mitigation by Unlearning Shared
Adversarial Examples", NeurIPS 2023, https://arxiv.org/abs/2307.10562. This module implements the
algorithm as ``docs/SAU.md`` (the project's specification) states it:

- ``h0`` is the backdoored model, frozen; ``h`` starts as a copy and is the only one updated.
- Per batch of the clean set, PGD searches a perturbation ``delta`` that makes ``h`` and ``h0``
  wrong *in the same way* (a shared adversarial example), then one Adam step teaches ``h`` the
  clean labels while pushing it away from the class ``h0`` gives the adversarial example.

The numbers are the reference's; the work is not. Compared with the authors' loop, clean
predictions are computed once per batch, ``h``'s parameters take no gradient during PGD, ``h0``
always runs under ``no_grad``, masks replace boolean indexing (no host synchronisation inside
the PGD loop on GPUs), the clean set stays on the device, the tensors use channels-last memory
(CUDA and CPU), and on CUDA the forwards run in bf16. ``bench/sau_reference.py`` keeps a
reference-structured loop, and ``tests/test_sau.py`` checks that both give the same
perturbations and losses.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ParamConfig, param
from ..data import ImageData
from ..device import autocast, cpu_copy, describe, memory_format, pick_device
from ..events import (
    Callback,
    Evaluated,
    Finished,
    NonFiniteLoss,
    ProbeSnapshot,
    SAUBatch,
    SAURound,
    Started,
    StopFlag,
    emit,
)
from ..lab.recipes import recipe
from ..metrics import predict
from .base import (
    Defense,
    DefenseResult,
    DefenseState,
    Paper,
    check_state,
    frozen_copy,
    full_eval,
    live_eval,
    live_sets,
    subset,
)

__all__ = [
    "CUDA_BATCHES_AHEAD",
    "NORMS",
    "PGD_INITS",
    "SATURATION_MASS",
    "DEFENSE",
    "SAUConfig",
    "default_sau_config",
    "init_delta",
    "project",
    "purify",
    "saturated_flags",
    "shared_pgd",
]

NORMS = ("Linf", "L2", "L1", "Reg")
# On CUDA the loop runs ahead of the GPU by at most this many batches: their SAUBatch events
# (and the check of the stop flag) wait for them. 1 keeps one batch queued while the host
# launches the next; more lets Stop and the live view lag further behind the GPU.
CUDA_BATCHES_AHEAD = 1
PGD_INITS = ("max", "min", "zero", "random")


@dataclass(frozen=True)
class SAUConfig(ParamConfig):
    """SAU's settings; the defaults are the reference implementation's (BackdoorBench config)."""

    label = "SAU"
    kind = "defence"

    # the outer loop (unlearning)
    rounds: int = param(100, "passes over the clean set", min=1, max=10000)
    batch_size: int = param(256, "clean images per step", min=1, max=8192)
    lr: float = param(1e-4, "Adam (AMSGrad) learning rate, constant", min=0.0, max=1.0)
    lmd_1: float = param(1.0, "weight of L_cl, the clean loss", min=0.0, max=100.0)
    lmd_2: float = param(0.0, "weight of L_at, adversarial training on x+delta", min=0.0, max=100.0)
    lmd_3: float = param(1.0, "weight of L_shared, the shared adversarial risk", min=0.0, max=100.0)
    outer_steps: int = param(1, "optimiser steps per batch on the same delta", min=1, max=100)
    train_mode: bool = param(
        False, "BatchNorm in training mode for the update (raises ACC but also ASR)"
    )
    # the inner loop (shared adversarial examples, PGD)
    norm: str = param("Linf", "norm ball of delta", choices=list(NORMS))
    eps: float = param(0.2, "radius of the norm ball (pixel units for Linf)", min=0.0, max=1000.0)
    pgd_steps: int = param(5, "PGD steps", min=0, max=1000)
    pgd_lr: float = param(0.2, "PGD step size (signed gradient)", min=0.0, max=1000.0)
    pgd_init: str = param(
        "max", "initial delta: +eps, -eps, 0 or uniform [0, 1)", choices=list(PGD_INITS)
    )
    beta_1: float = param(0.01, "weight of L_adv: fool each model", min=0.0, max=100.0)
    beta_2: float = param(1.0, "weight of L_share: fool both the same way", min=0.0, max=100.0)
    clip: bool = param(False, "clip x+delta to [0, 1] (the reference does not)")
    # bookkeeping
    shuffle: bool = param(True, "reshuffle the clean set every round")
    seed: int = param(0, "seed for shuffling, the random init, the probe and eval subsets", min=0)
    eval_size: int = param(
        1000, "test images per live evaluation each round (0: the full sets)", min=0
    )
    probe_size: int = param(16, "clean images in the probe batch shown every round", min=0, max=256)
    # speed (on the CPU, channels_last=False gives the reference's perturbations bit for bit,
    # its losses and weights to float rounding: see OUTER_FORWARDS; channels-last rounds
    # differently: sau_core.device.memory_format)
    amp: bool = param(True, "bf16 autocast on CUDA")
    channels_last: bool = param(True, "channels-last memory (CUDA and CPU)")


# How exact the fast path is. The reference's outer step runs h ONCE on the concatenation
# [x, x + delta]; sau_step runs h on x (before PGD, reused for h's clean predictions) and on
# x + delta as two forwards of B images. With BatchNorm frozen the two are the same function,
# but the kernels sum in another order, so on the CPU in fp32 with contiguous tensors
# (tests/test_sau.py) the perturbations are the reference loop's bit for bit while the losses
# and the weights after each Adam step agree to float rounding, not bit for bit (on 8x8 digits:
# 3 to 5 of 8 batches' losses bit-equal, weights within 3e-8 after 8 steps). One concatenated
# forward would cost an extra forward of h on x every batch.
OUTER_FORWARDS = 2


def default_sau_config(dataset: str, **overrides) -> SAUConfig:
    """SAU's settings for a data set: the reference's, except where the data set's
    :class:`~sau_core.lab.recipes.Recipe` says otherwise (digits: a batch of 64, since the
    reference's 256 is larger than a digits clean set, and 60 rounds), with ``overrides``."""
    base = dict(recipe(dataset).sau)
    base.update(overrides)
    return SAUConfig(**base).validate()


# ------------------------------------------------------------------------------- PGD pieces
def project(delta: Tensor, norm: str, eps: float) -> Tensor:
    """Project each sample's perturbation (B, C, H, W) back into its ``norm`` ball of radius eps."""
    if norm == "Linf":
        return delta.clamp(-eps, eps)
    if norm in ("L1", "L2"):
        flat = delta.flatten(1)
        size = flat.abs().sum(1) if norm == "L1" else flat.pow(2).sum(1).sqrt()
        scale = torch.where(size > eps, eps / size.clamp_min(1e-12), torch.ones_like(size))
        return delta * scale.view(-1, 1, 1, 1)
    if norm == "Reg":
        return delta
    raise ValueError(f"unknown norm {norm!r}; choose from {NORMS}")


def init_delta(
    x: Tensor, init: str, norm: str, eps: float, generator: torch.Generator | None
) -> Tensor:
    """The starting perturbation (projected): +eps, -eps, zero, or uniform [0, 1) as the reference."""
    if init == "max":
        delta = torch.full_like(x, eps)
    elif init == "min":
        delta = torch.full_like(x, -eps)
    elif init == "zero":
        delta = torch.zeros_like(x)
    elif init == "random":
        delta = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    else:
        raise ValueError(f"unknown PGD init {init!r}; choose from {PGD_INITS}")
    return project(delta, norm, eps)


def _js_per_sample(logits_h: Tensor, logits_h0: Tensor) -> Tensor:
    """Jensen-Shannon divergence between the two softmaxes (clamped at 1e-8), per sample (B,)."""
    p = F.softmax(logits_h, dim=1).clamp(min=1e-8)
    q = F.softmax(logits_h0, dim=1).clamp(min=1e-8)
    m = 0.5 * (p + q)
    js = 0.5 * (p * p.log() + q * q.log()) - 0.5 * (p * m.log() + q * m.log())
    return js.sum(1)


@dataclass
class PGDResult:
    delta: Tensor  # (B, C, H, W) final perturbation
    l_adv: Tensor  # scalars from the last PGD step that ran (device tensors, no sync)
    l_share: Tensor
    steps: Tensor  # PGD steps run before the early exit


def _pgd_step(
    h: nn.Module,
    h0: nn.Module,
    x: Tensor,
    y: Tensor,
    delta: Tensor,
    pred_h: Tensor,
    pred_h0: Tensor,
    config: SAUConfig,
    b: int,
    amp: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One signed-gradient step of shared PGD on the samples given (``b``: the whole batch's
    size, which both loss terms are divided by). Returns the projected new delta, L_adv and
    L_share at the current delta, and the per-sample ``shared`` flags there."""
    delta = delta.detach().requires_grad_(True)
    xa = x + delta
    if config.clip:
        xa = xa.clamp(0, 1)
    with autocast(x.device, amp):
        logits_h, logits_h0 = h(xa).float(), h0(xa).float()
    adv_h, adv_h0, _, shared = sae_flags(pred_h, pred_h0, logits_h.argmax(1), logits_h0.argmax(1))
    ce_h = F.cross_entropy(logits_h, y, reduction="none")
    ce_h0 = F.cross_entropy(logits_h0, y, reduction="none")
    adv_loss = -((ce_h * ~adv_h).sum() + (ce_h0 * ~adv_h0).sum()) / 2 / b
    share_loss = (_js_per_sample(logits_h, logits_h0) * ~shared).sum() / b
    loss = config.beta_1 * adv_loss + config.beta_2 * share_loss
    (grad,) = torch.autograd.grad(loss, delta)
    new = project(delta.detach() - config.pgd_lr * grad.sign(), config.norm, config.eps)
    return new, adv_loss, share_loss, shared


def shared_pgd(
    h: nn.Module,
    h0: nn.Module,
    x: Tensor,
    y: Tensor,
    pred_h: Tensor,
    pred_h0: Tensor,
    config: SAUConfig,
    generator: torch.Generator | None = None,
    amp: bool = False,
) -> PGDResult:
    """Search shared adversarial perturbations for one batch (SAU's inner maximisation).

    Args:
        h, h0: the model being purified and the frozen backdoored model, both in eval mode and
            with parameters that do not require grad.
        x: (B, C, H, W) clean images in [0, 1]; y: (B,) true labels.
        pred_h, pred_h0: (B,) the models' predictions on the clean x (computed once per batch).
        config: eps, norm, steps, step size, init, beta_1, beta_2, clip.

    Minimises ``beta_1 * L_adv + beta_2 * L_share`` over delta with signed-gradient steps and
    projection; stops early once every sample is shared (on GPUs without a host sync: the
    remaining steps leave delta unchanged, which is what stopping does).
    """
    if x.device.type != "cuda" and config.norm in ("Linf", "Reg"):
        return _shared_pgd_compact(h, h0, x, y, pred_h, pred_h0, config, generator, amp)
    b = x.shape[0]
    delta = init_delta(x, config.pgd_init, config.norm, config.eps, generator)
    zero = x.new_zeros(())
    l_adv, l_share, steps = zero, zero, torch.zeros((), dtype=torch.long, device=x.device)
    done = torch.zeros((), dtype=torch.bool, device=x.device)
    sync_free = x.device.type == "cuda"
    for _ in range(config.pgd_steps):
        new, adv_loss, share_loss, shared = _pgd_step(h, h0, x, y, delta, pred_h, pred_h0,
                                                      config, b, amp)  # fmt: skip
        all_shared = shared.all()
        if sync_free:  # keep the state of the step where every sample became shared
            delta = torch.where(done, delta, new)
            l_adv = torch.where(done, l_adv, adv_loss.detach())
            l_share = torch.where(done, l_share, share_loss.detach())
            steps = steps + (~done).long()
            done = done | all_shared
        else:
            delta, l_adv, l_share, steps = new, adv_loss.detach(), share_loss.detach(), steps + 1
            if bool(all_shared):
                break
    return PGDResult(delta.detach(), l_adv, l_share, steps)


def _shared_pgd_compact(
    h: nn.Module,
    h0: nn.Module,
    x: Tensor,
    y: Tensor,
    pred_h: Tensor,
    pred_h0: Tensor,
    config: SAUConfig,
    generator: torch.Generator | None,
    amp: bool,
) -> PGDResult:
    """:func:`shared_pgd` that stops computing samples once they are shared (CPU; L_inf, Reg).

    A shared sample is left out of both loss terms, so its gradient is exactly zero, its
    perturbation stays as it is (sign(0) = 0, and L_inf/Reg projection leaves an in-ball point
    alone) and it stays shared: running it again changes no number. Dropping it from later steps
    gives the same perturbations with less work; the reported losses differ only in the order
    of their sums. (L1/L2 re-projection can move a point by rounding, so those keep the full
    batch; on CUDA the full batch avoids the host sync that compaction needs.)
    """
    b = x.shape[0]
    delta = init_delta(x, config.pgd_init, config.norm, config.eps, generator)
    active = torch.arange(b, device=x.device)
    l_adv = l_share = x.new_zeros(())
    steps = 0
    for _ in range(config.pgd_steps):
        new, adv_loss, share_loss, shared = _pgd_step(
            h, h0, x[active], y[active], delta[active], pred_h[active], pred_h0[active],
            config, b, amp,
        )  # fmt: skip
        delta[active] = new
        l_adv, l_share, steps = adv_loss.detach(), share_loss.detach(), steps + 1
        if bool(shared.all()):
            break
        active = active[~shared]
    return PGDResult(delta, l_adv, l_share, torch.tensor(steps))


def sae_flags(
    pred_h: Tensor, pred_h0: Tensor, pred_h_adv: Tensor, pred_h0_adv: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample flags (adv_h, adv_h0, common, shared) from clean and adversarial predictions.

    adv_h: h changes its prediction; adv_h0: h0 does; common: both do; shared: both do and agree.
    """
    adv_h = pred_h_adv != pred_h
    adv_h0 = pred_h0_adv != pred_h0
    common = adv_h & adv_h0
    return adv_h, adv_h0, common, common & (pred_h_adv == pred_h0_adv)


def _target_and_rest(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(B,) softmax probability of ``target`` and (B,) mass on the other classes, the latter
    summed over them (not ``1 - p_t``), as the reference's L_shared computes it."""
    p = F.softmax(logits, dim=1)
    one_hot = F.one_hot(target, num_classes=p.shape[1]).to(p.dtype)
    return (p * one_hot).sum(1), (p * (1 - one_hot)).sum(1)


def shared_adversarial_risk(logits_adv_h: Tensor, target: Tensor, mask: Tensor, b: int) -> Tensor:
    """L_shared: push h away from ``target`` (h0's class for x+delta) on ``mask`` samples.

    ``(-sum log(1e-6 + clamp(1 - p_t, max=0.999)) - sum log(1 + 1e-6 - clamp(p_t, min=0.001))) / 2 / B``
    with ``1 - p_t`` computed as the mass on the other classes, as the reference does.
    """
    pos_p, neg_p = _target_and_rest(logits_adv_h, target)
    m = mask.to(pos_p.dtype)
    a = (torch.log(1e-6 + neg_p.clamp(max=0.999)) * m).sum()
    c = (torch.log(1 + 1e-6 - pos_p.clamp(min=0.001)) * m).sum()
    return (-a - c) / 2 / b


# Below this probability mass q on the other classes, L_shared's 1e-6 offset dominates: its
# gradient with respect to the logits is about q / (1e-6 + q) of the unclamped -log(1 - p_t)'s
# (less where float32 rounds p_t to 1), under a half and falling with q (a logit margin of about
# 14 or more).
SATURATION_MASS = 1e-6


def saturated_flags(logits_adv_h: Tensor, target: Tensor) -> Tensor:
    """(B,) bool: samples where h is so sure of ``target`` that L_shared barely moves it.

    True when the softmax mass outside ``target`` (computed as L_shared computes it) is below
    :data:`SATURATION_MASS`: such a sample gives L_shared almost no gradient. A backdoored
    model that puts float32 probability 1.0 on its trigger class saturates on most of its
    adversarial examples, and SAU may then leave the backdoor in place. A property of the
    reference's loss, kept as it is and counted so that a user can see why a run does not move.
    """
    return _target_and_rest(logits_adv_h.float(), target)[1] < SATURATION_MASS


@dataclass
class BatchStats:
    """One batch's numbers, kept on the device until the round ends (one host sync per round)."""

    values: Tensor  # (14,) float: l_cl l_at l_shared loss l_adv l_share steps n adv_h adv_h0 common
    # shared potential_poison saturated
    # (K,) float: the potential-poison samples per class h0 gives their x+delta (where the
    # examples SAU unlearns land); None from callers that do not count them
    adv_classes: Tensor | None = None


def sau_step(
    h: nn.Module,
    h0: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    config: SAUConfig,
    generator: torch.Generator | None = None,
    amp: bool = False,
    pred_h0: Tensor | None = None,
) -> tuple[Tensor, BatchStats]:
    """One SAU batch: shared PGD, then ``outer_steps`` Adam steps on h. Returns (delta, stats).

    ``pred_h0``: h0's (B,) predictions on the clean x when the caller has them (h0 is frozen, so
    :func:`purify` computes them once per run); None computes them here.
    """
    b = x.shape[0]
    if pred_h0 is None:
        with torch.no_grad(), autocast(x.device, amp):
            pred_h0 = h0(x).float().argmax(1)
    # h's clean forward is needed twice: its argmax before PGD, its loss in the outer step. With
    # BatchNorm frozen (the default) h is the same function in both places, so one forward with
    # autograd on serves both; with ``train_mode`` the outer forward must run in train mode.
    reuse = not config.train_mode and config.outer_steps == 1
    if reuse:
        with autocast(x.device, amp):
            logits = h(x).float()
        pred_h = logits.detach().argmax(1)
    else:
        with torch.no_grad(), autocast(x.device, amp):
            pred_h = h(x).argmax(1)
    params = [p for p in h.parameters()]
    for p in params:
        p.requires_grad_(False)
    pgd = shared_pgd(h, h0, x, y, pred_h, pred_h0, config, generator, amp)
    for p in params:
        p.requires_grad_(True)
    xa = x + pgd.delta
    if config.clip:
        xa = xa.clamp(0, 1)
    with torch.no_grad(), autocast(x.device, amp):
        pred_h0_adv = h0(xa).float().argmax(1)
    potential = (pred_h0_adv != y) & (pred_h0_adv != pred_h0)
    for _ in range(config.outer_steps):
        if reuse:
            with autocast(x.device, amp):
                logits_adv = h(xa).float()
        else:
            if config.train_mode:
                h.train()
            with autocast(x.device, amp):
                logits, logits_adv = h(torch.cat([x, xa])).float().split(b)
            h.eval()
        l_cl = F.cross_entropy(logits, y)
        l_at = F.cross_entropy(logits_adv, y)
        l_shared = shared_adversarial_risk(logits_adv, pred_h0_adv, potential, b)
        loss = config.lmd_1 * l_cl + config.lmd_2 * l_at + config.lmd_3 * l_shared
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    # Counts at the final delta, by the inner loop's rule (each model against its clean prediction).
    adv_h, adv_h0, common, shared = sae_flags(
        pred_h, pred_h0, logits_adv.detach().argmax(1), pred_h0_adv
    )
    saturated = potential & saturated_flags(logits_adv.detach(), pred_h0_adv)
    values = torch.stack(
        [
            l_cl.detach(), l_at.detach(), l_shared.detach(), loss.detach(),
            pgd.l_adv.float(), pgd.l_share.float(), pgd.steps.float(), x.new_tensor(float(b)),
            adv_h.sum().float(), adv_h0.sum().float(), common.sum().float(), shared.sum().float(),
            potential.sum().float(), saturated.sum().float(),
        ]
    )  # fmt: skip
    # one-hot sum, not bincount on a boolean index: no host sync on CUDA
    k = logits_adv.shape[1]
    landed = (F.one_hot(pred_h0_adv, k) * potential.unsqueeze(1)).sum(0).float()
    return pgd.delta, BatchStats(values, landed)


# -------------------------------------------------------------------------------- the driver
ADAM_KEYS = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")  # AMSGrad's per-parameter state


def _checked_adam_state(optimizer: dict, params: list[Tensor]) -> dict:
    """The per-parameter AMSGrad state of ``optimizer`` (a state_dict), shapes checked; ValueError."""
    state = optimizer.get("state") if isinstance(optimizer, dict) else None
    if not isinstance(state, dict):
        raise ValueError("the optimizer state has no 'state' block")
    out = {}
    for i, entry in state.items():
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(params):
            raise ValueError(f"the optimizer state names parameter {i!r}; h has {len(params)}")
        if not isinstance(entry, dict) or set(entry) != set(ADAM_KEYS):
            raise ValueError(f"the optimizer state of parameter {i} is not AMSGrad's {ADAM_KEYS}")
        for key in ADAM_KEYS:
            t = entry[key]
            want = () if key == "step" else tuple(params[i].shape)
            if not isinstance(t, Tensor) or tuple(t.shape) != want or not t.is_floating_point():
                raise ValueError(f"the optimizer's {key} of parameter {i} does not fit h")
        out[i] = dict(entry)
    return out


def purify(
    model: nn.Module,
    clean: ImageData,
    config: SAUConfig | None = None,
    *,
    test: ImageData | None = None,
    backdoor=None,
    device: str | torch.device | None = None,
    callback: Callback | None = None,
    stop: StopFlag | None = None,
    resume: DefenseState | None = None,
    on_state: Callable[[DefenseState], None] | None = None,
) -> DefenseResult:
    """Purify a backdoored ``model`` with Shared Adversarial Unlearning.

    Args:
        model: the backdoored classifier h0 (images in [0, 1] -> logits). Never modified.
        clean: the defender's small clean set (true labels, no trigger).
        config: :class:`SAUConfig` (default: the reference's settings).
        test: the clean test set, for ACC (and h/h0 disagreement) per round and at the end.
        backdoor: a :class:`~sau_core.attacks.BackdoorTest` when the trigger is known (ASR, RA,
            per-class ASR); None for an unknown trigger.
        device: "cuda", "mps", "cpu", or None for the best available.
        callback: receives, in order, :class:`Started`, a :class:`ProbeSnapshot` of round 0, then
            per round the round's :class:`SAUBatch` events, a :class:`SAURound` and a
            :class:`ProbeSnapshot`, and finally :class:`Finished`.
        stop: a flag with ``is_set()``, checked before every batch; the run then ends with the
            model as it was after the last completed batch, evaluated on the full sets. On
            CUDA, where the host runs ahead of the GPU, at most :data:`CUDA_BATCHES_AHEAD`
            batches are still queued when the flag is seen (and a batch's event arrives that
            many batches late).
        resume: a :class:`DefenseState` from ``on_state`` of an earlier run with the same model,
            clean set and config: the run continues at round ``resume.round + 1`` and ends with
            the numbers the uninterrupted run gives (bit for bit on a CPU with the same number
            of threads). Its events start with :class:`Started` (``resumed_from`` set); no
            round-0 probe. None: start from h0.
        on_state: called with a :class:`DefenseState` (CPU copies) after every completed round,
            once that round's events are out; a stopped, partial round gives none.

    Returns:
        :class:`DefenseResult` with the purified model (a new object) and full-set evaluations
        before and after.
    """
    config = (config or SAUConfig()).validate()
    if len(clean) == 0:
        raise ValueError("the clean set is empty")
    device = pick_device(device)
    amp = config.amp and device.type == "cuda"
    fmt = memory_format(device, config.channels_last, cpu=True)
    h0 = frozen_copy(model, device, fmt)
    h = copy.deepcopy(h0)
    for p in h.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(
        h.parameters(), lr=config.lr, betas=(0.9, 0.999), weight_decay=0.0, amsgrad=True
    )
    gen = torch.Generator().manual_seed(config.seed)
    history: list[SAURound] = []
    done_before, elapsed_before = 0, 0.0
    if resume is not None:
        check_state(resume, "sau", config, config.rounds)
        try:
            h.load_state_dict(resume.h)
            adam = _checked_adam_state(resume.optimizer, list(h.parameters()))
            optimizer.load_state_dict(
                {"state": adam, "param_groups": optimizer.state_dict()["param_groups"]}
            )
            gen.set_state(resume.generator)
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
            raise ValueError(f"the resume state does not fit this model: {err}") from None
        history = list(resume.history)
        done_before, elapsed_before = resume.round, float(resume.elapsed)
    x_all = clean.x.to(device).contiguous(memory_format=fmt)
    y_all = clean.y.to(device)
    n = len(y_all)
    batches = math.ceil(n / config.batch_size)
    total = batches * config.rounds
    k = clean.info.num_classes

    # Fixed, seeded subsets: the live evaluation and the probe batch.
    live = live_sets(test, backdoor, config.eval_size, config.seed)
    h0_live_pred = predict(h0, live[0], device=device) if live else None
    probe = subset(n, config.probe_size, config.seed + 1)[: config.probe_size]
    before = full_eval(h0, test, backdoor, k, device)
    # h0 is frozen: its clean predictions are computed once, in the round's batch layout.
    with torch.no_grad(), autocast(device, amp):
        pred_h0_all = torch.cat(
            [
                h0(x_all[i : i + config.batch_size]).float().argmax(1)
                for i in range(0, n, config.batch_size)
            ]
        )

    emit(callback, Started("sau", total, describe(device), config.to_dict(), done_before))
    if config.probe_size and resume is None:
        emit(callback, _probe(h, h0, x_all[probe], y_all[probe], config, 0, amp))

    start, stopped = time.perf_counter() - elapsed_before, False
    step, rounds_done = done_before * batches, done_before
    for rnd in range(done_before + 1, config.rounds + 1):
        order = torch.randperm(n, generator=gen) if config.shuffle else torch.arange(n)
        order = order.to(device)
        stats: list[Tensor] = []
        landed: list[Tensor] = []
        in_flight: deque[tuple[Tensor, torch.cuda.Event]] = deque()
        for i in range(0, n, config.batch_size):
            if stop is not None and stop.is_set():
                stopped = True
                break
            idx = order[i : i + config.batch_size]
            _, st = sau_step(
                h, h0, optimizer, x_all[idx], y_all[idx], config, gen, amp, pred_h0_all[idx]
            )
            stats.append(st.values)
            landed.append(st.adv_classes)
            if device.type != "cuda":  # no async queue to keep full: report at once
                step += 1
                emit(callback, _batch_event(rnd, step, total, st.values.tolist()))
                continue
            # CUDA: keep the GPU fed, but never more than CUDA_BATCHES_AHEAD batches ahead of
            # what has been reported, so Stop (checked before every batch) and the live
            # progress lag the GPU by a bounded amount, not by a whole round
            done = torch.cuda.Event()
            done.record()
            in_flight.append((st.values, done))
            while len(in_flight) > CUDA_BATCHES_AHEAD:
                step = _report_oldest(in_flight, callback, rnd, step, total)
        while in_flight:
            step = _report_oldest(in_flight, callback, rnd, step, total)
        if stopped and not stats:
            break
        rounds_done = rnd if not stopped else rnd - 1
        elapsed = time.perf_counter() - start
        summary = torch.stack(stats).sum(0).tolist()
        if not all(math.isfinite(v) for v in summary[:6]):  # l_cl, l_at, l_shared, loss, ...
            raise NonFiniteLoss(
                f"SAU's loss is not finite in round {rnd} (clean loss {summary[0]:.3g}, total "
                f"{summary[3]:.3g}): the model's outputs overflow. The run stops here; try a "
                "smaller learning rate, or check the model's weights"
            )
        ev = live_eval(h, live, h0_live_pred, k, device)
        rec = SAURound(
            round=rnd,
            rounds=config.rounds,
            acc=ev["acc"],
            asr=ev["asr"],
            ra=ev["ra"],
            per_class_asr=ev["per_class_asr"],
            off_target=ev["off_target"],
            losses={"L_cl": summary[0] / len(stats), "L_shared": summary[2] / len(stats)},
            defense="sau",
            lr=optimizer.param_groups[0]["lr"],
            elapsed=elapsed,
            eta=elapsed / step * (total - step) if not stopped else 0.0,
            adv_h=int(summary[8]),
            adv_h0=int(summary[9]),
            common=int(summary[10]),
            shared=int(summary[11]),
            potential_poison=int(summary[12]),
            saturated=int(summary[13]),
            adv_classes=[int(c) for c in torch.stack(landed).sum(0).tolist()],
            n=int(summary[7]),
            disagreement=ev["disagreement"],
            l_cl=summary[0] / len(stats),
            l_shared=summary[2] / len(stats),
            stopped=stopped,
        )
        history.append(rec)
        emit(callback, rec)
        if config.probe_size:
            emit(callback, _probe(h, h0, x_all[probe], y_all[probe], config, rnd, amp))
        if stopped:
            break
        if on_state is not None:
            on_state(
                DefenseState(
                    round=rnd,
                    h=cpu_copy(h.state_dict()),
                    optimizer=cpu_copy(optimizer.state_dict()),
                    generator=gen.get_state(),  # already a CPU copy
                    history=list(history),
                    elapsed=time.perf_counter() - start,
                    config=config.to_dict(),
                    defense="sau",
                )
            )

    h.eval()
    elapsed = time.perf_counter() - start
    after = full_eval(h, test, backdoor, k, device)
    emit(
        callback,
        Finished(
            "sau", stopped, elapsed, Evaluated(after.acc, after.asr, after.ra, after.per_class_asr)
        ),
    )
    for p in h.parameters():
        p.requires_grad_(False)
    h = h.to(memory_format=torch.contiguous_format)
    return DefenseResult(
        h, before, after, history, rounds_done, stopped, elapsed, config, describe(device), "sau"
    )


_BATCH_FIELDS = (
    "l_cl", "l_at", "l_shared", "loss", "l_adv", "l_share", "pgd_steps", "n",
    "adv_h", "adv_h0", "common", "shared", "potential_poison", "saturated",
)  # fmt: skip


def _report_oldest(in_flight: deque, callback, rnd: int, step: int, total: int) -> int:
    """Wait for the oldest batch in flight on the GPU, emit its :class:`SAUBatch`; the new step."""
    values, done = in_flight.popleft()
    done.synchronize()
    emit(callback, _batch_event(rnd, step + 1, total, values.tolist()))
    return step + 1


def _batch_event(rnd: int, step: int, total: int, row: list[float]) -> SAUBatch:
    v = dict(zip(_BATCH_FIELDS, row, strict=True))
    for key in _BATCH_FIELDS[6:]:
        v[key] = int(v[key])
    return SAUBatch(round=rnd, step=step, total_steps=total, **v)


def _probe(h, h0, x: Tensor, y: Tensor, config: SAUConfig, rnd: int, amp: bool) -> ProbeSnapshot:
    """Shared PGD on the probe batch against the current h (no update), with every prediction."""
    with torch.no_grad(), autocast(x.device, amp):
        pred_h, pred_h0 = h(x).argmax(1), h0(x).argmax(1)
    params = list(h.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(config.seed + 4)
    delta = shared_pgd(h, h0, x, y, pred_h, pred_h0, config, g, amp).delta
    for p, f in zip(params, flags, strict=True):
        p.requires_grad_(f)
    xa = (x + delta).clamp(0, 1) if config.clip else x + delta
    with torch.no_grad(), autocast(x.device, amp):
        adv_pred_h, adv_pred_h0 = h(xa).argmax(1), h0(xa).argmax(1)
    adv_h, adv_h0, common, shared = sae_flags(pred_h, pred_h0, adv_pred_h, adv_pred_h0)
    return ProbeSnapshot(
        round=rnd,
        x=x.cpu(),
        delta=delta.cpu(),
        y=y.cpu(),
        pred_h0_clean=pred_h0.cpu(),
        pred_h_clean=pred_h.cpu(),
        pred_h0_adv=adv_pred_h0.cpu(),
        pred_h_adv=adv_pred_h.cpu(),
        adv_h=adv_h.cpu(),
        adv_h0=adv_h0.cpu(),
        common=common.cpu(),
        shared=shared.cpu(),
    )


def with_overrides(config: SAUConfig, **changes) -> SAUConfig:
    return replace(config, **{k: v for k, v in changes.items() if v is not None}).validate()


DEFENSE = Defense(
    name="sau",
    title="SAU: shared adversarial unlearning",
    paper=Paper(
        "Wei, Zhang, Zha, Wu",
        "Shared Adversarial Unlearning: Backdoor Mitigation by Unlearning Shared Adversarial "
        "Examples",
        "NeurIPS 2023",
        "2307.10562",
    ),
    config=SAUConfig,
    run=purify,
    summary=(
        "For every batch of clean images, SAU searches small perturbations that fool the "
        "backdoored model and the model being purified in the same way (shared adversarial "
        "examples), then trains the model to keep the clean label and to stay away from the "
        "class the backdoored model gives them. A trigger is such a perturbation, so unlearning "
        "the shared ones unlearns the trigger too."
    ),
    weakness=(
        "It unlearns only what its search reaches: where the backdoored model's adversarial "
        "examples do not land on the target (digits trained without random crops; Blended on the "
        "small CNN after a few rounds) the backdoor stays, and a model that is sure of its "
        "trigger class to a millionth gives its loss no gradient. A low ASR can hide a trigger "
        "that now pulls images to another class: on the demo's BadNets model RA stays near 0.37."
    ),
)
