"""Heat maps of two models on one colour scale, and the trigger focus: the share of attribution mass
inside the pixels the trigger changes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .methods import METHODS, _check_images, _entry, attribute


# ---------------------------------------------------------------------------------- heat maps
def _mass(attr: Tensor) -> Tensor:
    """Channel-reduced attribution mass: |attr| summed over channels, (B, H, W) float32 CPU.
    A (B, H, W) input is taken as already reduced (its absolute value)."""
    if not isinstance(attr, Tensor) or attr.ndim not in (3, 4):
        shape = tuple(attr.shape) if isinstance(attr, Tensor) else type(attr).__name__
        raise ValueError(f"attributions must be (B, C, H, W) or (B, H, W), got {shape}")
    a = attr.detach().float().cpu().abs()
    return a.sum(1) if a.ndim == 4 else a


def _percentile(values: Tensor, q: float) -> Tensor:
    """Nearest-rank ``q``-th percentile of each row of ``values`` (R, M) -> (R,); 100 is the max."""
    m = values.shape[1]
    k = min(m, max(1, math.ceil(q / 100.0 * m)))
    return values.kthvalue(k, dim=1).values


def shared_scale(*attrs: Tensor, percentile: float = 99.0, per_image: bool = True) -> Tensor:
    """The attribution mass that maps to 1 in :func:`heatmaps`, common to all ``attrs``.

    Args:
        *attrs: attributions of the same images by several models (or methods): each
            (B, C, H, W), (B, 1, H, W) or already reduced (B, H, W); mass is |attr| summed over
            channels.
        percentile: in (0, 100]; the scale is this percentile of the masses of ALL maps together
            (100: their maximum, which keeps ratios between maps exact; below 100 clips outliers).
        per_image: one scale per image, shared by the models (default), or one for the whole set.

    Returns:
        (B,) float32 on the CPU (all equal when ``per_image`` is False). Where the percentile is
        0 the maximum is used, and where every map is 0 the scale is 1.
    """
    if not attrs:
        raise ValueError("shared_scale needs at least one attribution tensor")
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)):
        raise ValueError(f"percentile must be a number in (0, 100], got {percentile!r}")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    masses = [_mass(a) for a in attrs]
    if any(m.shape != masses[0].shape for m in masses):
        shapes = ", ".join(str(tuple(m.shape)) for m in masses)
        raise ValueError(f"the maps must be of the same images, (B, H, W) alike; got {shapes}")
    b = masses[0].shape[0]
    if b == 0:
        return torch.ones(0)
    values = torch.cat([m.flatten(1) for m in masses], dim=1)  # (B, models * H * W)
    if not per_image:
        values = values.reshape(1, -1)
    scale = _percentile(values, percentile)
    top = values.amax(1)
    scale = torch.where(scale > 0, scale, top)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return scale.expand(b).clone() if not per_image else scale


def heatmaps(
    *attrs: Tensor, percentile: float = 99.0, per_image: bool = True
) -> tuple[Tensor, ...]:
    """Heat maps in [0, 1] of several models' attributions on the same images, on ONE scale.

    Each map is the attribution mass (|attr| summed over channels) divided by
    :func:`shared_scale` of all the maps together and clipped to [0, 1], so the maps of h0 and h
    can be drawn with one colour scale: a pixel twice as bright matters twice as much, whichever
    model it belongs to (below the clipping percentile).

    Args:
        *attrs: (B, C, H, W), (B, 1, H, W) or (B, H, W) attributions, one per model.
        percentile, per_image: as in :func:`shared_scale` (defaults: 99, one scale per image).

    Returns:
        One (B, H, W) float32 CPU tensor in [0, 1] per input, in order.
    """
    scale = shared_scale(*attrs, percentile=percentile, per_image=per_image)  # (B,)
    return tuple(_normalise(attrs, scale))


def _normalise(attrs: Sequence[Tensor], scale: Tensor) -> list[Tensor]:
    return [(_mass(a) / scale.view(-1, 1, 1)).clamp_(0.0, 1.0) for a in attrs]  # (B, H, W) each


# ------------------------------------------------------------------------------ trigger focus
def trigger_mask(trigger: Callable[[Tensor], Tensor], x: Tensor, tol: float = 1e-6) -> Tensor:
    """The trigger's region per image: the pixels that ``trigger`` changes in any channel.

    Args:
        trigger: a batched function on images (a :class:`~sau_core.attacks.Trigger`).
        x: CLEAN images (B, C, H, W) in [0, 1]; not modified.
        tol: a pixel is in the region when some channel changes by more than this.

    Returns:
        bool (B, H, W) on ``x``'s device. A BadNets patch gives its square (minus pixels that
        already had the patch's value); a blended or warping trigger changes almost every pixel.
    """
    _check_images(x)
    with torch.no_grad():
        return _region(x, trigger(x), tol)


def _region(x: Tensor, triggered: Tensor, tol: float) -> Tensor:
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    return (triggered - x).abs().amax(1) > tol  # (B, H, W)


def trigger_focus(attr: Tensor, mask: Tensor) -> Tensor:
    """Share of each image's attribution mass inside the trigger's region.

    Mass is |attr| summed over channels (what :func:`heatmaps` shows). A map that only lights
    the region scores 1; a uniform map scores the region's share of the image.

    Args:
        attr: (B, C, H, W), (B, 1, H, W) or (B, H, W) attributions.
        mask: bool (B, H, W) or (H, W), e.g. from :func:`trigger_mask`.

    Returns:
        (B,) float32 on the CPU in [0, 1]; NaN where the map is all zero or the region empty.
    """
    mass = _mass(attr)  # (B, H, W)
    if not isinstance(mask, Tensor) or mask.shape not in (mass.shape, mass.shape[1:]):
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(
            f"mask must be (B, H, W) or (H, W) like the maps {tuple(mass.shape)}, got {shape}"
        )
    region = mask.detach().cpu().bool().expand_as(mass)
    total = mass.flatten(1).sum(1)
    inside = (mass * region).flatten(1).sum(1)
    valid = (total > 0) & region.flatten(1).any(1)
    return torch.where(valid, inside / total.clamp_min(1e-30), torch.full_like(total, math.nan))


@dataclass(frozen=True)
class FocusStats:
    """Trigger focus of one model with one method over a set of triggered images."""

    method: str
    mean: float  # mean share of attribution mass inside the trigger region (NaN if n == 0)
    std: float  # sample standard deviation over the images (0 for a single image)
    n: int  # images counted (those with a non-zero map and a non-empty region)
    area: float  # mean share of the image the region covers (all images): a uniform map's focus

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FocusComparison:
    """Trigger focus of the backdoored model h0 (``before``) and the purified h (``after``)."""

    before: FocusStats
    after: FocusStats

    @property
    def change(self) -> float:
        """after.mean - before.mean (negative: h looks less at the trigger)."""
        return self.after.mean - self.before.mean

    def to_dict(self) -> dict:
        return {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "change": self.change,
        }


def _summary(method: str, focus: Tensor, mask: Tensor) -> FocusStats:
    ok = focus[~focus.isnan()]
    n = len(ok)
    mean = float(ok.mean()) if n else math.nan
    std = float(ok.std()) if n > 1 else (0.0 if n == 1 else math.nan)
    area = float(mask.float().flatten(1).mean(1).mean()) if len(mask) else math.nan
    return FocusStats(method, mean, std, n, area)


def _methods(methods: str | Sequence[str] | None) -> list[str]:
    if methods is None:
        return list(METHODS)
    names = [methods] if isinstance(methods, str) else list(methods)
    for name in names:
        _entry(name)
    return names


def _params_for(params: Mapping[str, Mapping[str, Any]] | None, names: list[str]) -> dict:
    params = dict(params or {})
    unknown = sorted(str(k) for k in params if k not in names)
    if unknown:
        raise ValueError(
            f"params given for method(s) {', '.join(map(repr, unknown))} that are not being run "
            f"({', '.join(names)})"
        )
    return {name: dict(params.get(name) or {}) for name in names}


def focus_stats(
    model: nn.Module,
    x: Tensor,
    trigger: Callable[[Tensor], Tensor],
    methods: str | Sequence[str] | None = None,
    *,
    target: int | Sequence[int] | Tensor | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    tol: float = 1e-6,
    batch_size: int = 64,
) -> dict[str, FocusStats]:
    """Trigger focus of ``model`` on the triggered versions of ``x``, per method.

    Args:
        model: the classifier (images in [0, 1] -> logits).
        x: CLEAN test images (N, C, H, W); they are triggered here, and the region of each is
            where the trigger changes it (:func:`trigger_mask`). For an all-to-one attack pass
            images whose true class is not the target, as :func:`~sau_core.attacks.backdoor_test`
            does.
        trigger: the attack's trigger (e.g. ``AttackSpec.trigger(info)``).
        methods: a method name, several, or None for all of :data:`METHODS`.
        target: the class explained: None (default) for the model's prediction on each
            triggered image, an int (e.g. the attack's target) or one per image.
        params: per method, its parameters: ``{"integrated_gradients": {"n_steps": 32}}``.
        tol: the region's change tolerance (see :func:`trigger_mask`).
        batch_size: images per chunk.

    Returns:
        ``{method: FocusStats}`` in the order of ``methods``.
    """
    names = _methods(methods)
    per_method = _params_for(params, names)
    _check_images(x)
    with torch.no_grad():
        triggered = trigger(x)  # (N, C, H, W)
    mask = _region(x, triggered, tol).cpu()  # (N, H, W), as trigger_mask
    stats = {}
    for name in names:
        attr = attribute(model, triggered, target, name, batch_size=batch_size, **per_method[name])
        stats[name] = _summary(name, trigger_focus(attr, mask), mask)
    return stats


def compare_focus(
    h0: nn.Module,
    h: nn.Module,
    x: Tensor,
    trigger: Callable[[Tensor], Tensor],
    methods: str | Sequence[str] | None = None,
    *,
    target: int | Sequence[int] | Tensor | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    tol: float = 1e-6,
    batch_size: int = 64,
) -> dict[str, FocusComparison]:
    """Trigger focus before (the backdoored ``h0``) and after purification (``h``), per method.

    Same images, trigger, targets and parameters for both models; arguments as in
    :func:`focus_stats` (with ``target=None`` each model explains its own prediction).

    Returns:
        ``{method: FocusComparison(before, after)}`` in the order of ``methods``.
    """
    kwargs = {"target": target, "params": params, "tol": tol, "batch_size": batch_size}
    before = focus_stats(h0, x, trigger, methods, **kwargs)
    after = focus_stats(h, x, trigger, methods, **kwargs)
    return {name: FocusComparison(before[name], after[name]) for name in before}
