"""Trigger recovery from shared adversarial examples: the pattern SAU's search found.

SAU looks for perturbations that fool the backdoored model h0 (and the model being purified) in
the same way. On a backdoored model the easiest such perturbation is often the trigger itself, so
the perturbations that send h0 to one class, averaged, draw where the backdoor sits and which
class it serves. Per class that h0's perturbed images land on: the mean perturbation, and per
pixel how consistently the perturbations push the same way (the mean of their signs, in absolute
value: 1 when every perturbation pushes that pixel the same way, near 0 when they disagree).

Where the trigger is known, :func:`region_score` says how well the pattern matches it: the share
of the pattern's mass (sum of absolute values) inside the trigger's region, against the region's
share of the image (the *lift*: 1 is no better than a pattern spread evenly; a 3x3 patch on a
16x16 image allows up to 28). A trigger over the whole image has no region; there
:func:`pattern_cosine` compares the pattern with what the trigger adds to a mid-grey image. A warp
(WaNet) or a trigger made for each image (SSBA, Input-aware) has no one pattern to compare with,
and :func:`match` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..attacks import AttackSpec
from ..data import DatasetInfo


@dataclass
class RecoveredPattern:
    """The perturbations that send h0 to class ``cls``: how many, their mean (C, H, W) and the
    per-pixel consistency (H, W) in [0, 1]."""

    cls: int
    count: int
    mean: Tensor
    consistency: Tensor

    def to_dict(self) -> dict:
        return {"class": self.cls, "count": self.count}


def recover(deltas: Tensor, landed: Tensor, source: Tensor | None = None) -> list[RecoveredPattern]:
    """Group perturbations ``deltas`` (N, C, H, W) by the class ``landed`` (N,) that h0 gives the
    perturbed images; with ``source`` (N,), the images' true classes, only those that changed
    h0's answer count. Most populated class first."""
    if deltas.ndim != 4 or len(deltas) != len(landed):
        raise ValueError("deltas must be (N, C, H, W) with one landed class per perturbation")
    keep = torch.ones(len(landed), dtype=torch.bool) if source is None else landed != source
    out = []
    for c in landed[keep].unique().tolist():
        d = deltas[keep & (landed == c)].float()
        out.append(RecoveredPattern(int(c), len(d), d.mean(0), d.sign().mean(0).abs().mean(0)))
    return sorted(out, key=lambda p: (-p.count, p.cls))


def trigger_region(spec: AttackSpec, info: DatasetInfo) -> Tensor | None:
    """The pixels (H, W) bool the trigger changes on a black and a white image; None when that
    is the whole image (or nothing: a warp), so there is no region to match."""
    trigger = spec.trigger(info)
    flat = torch.stack([torch.zeros(info.shape), torch.ones(info.shape)])
    changed = ((trigger(flat) - flat).abs().amax(1) > 1e-6).any(0)
    share = float(changed.float().mean())
    return None if share == 0.0 or share > 0.5 else changed


def region_score(pattern: Tensor, region: Tensor) -> dict:
    """``inside``: the share of ``pattern``'s (C, H, W) absolute mass in ``region`` (H, W); ``area``:
    the region's share of the image; ``lift``: inside / area (1: no better than even spread)."""
    mass = pattern.abs().sum(0)  # (H, W)
    total = float(mass.sum())
    area = float(region.float().mean())
    inside = float(mass[region].sum()) / total if total > 0 else 0.0
    return {"inside": inside, "area": area, "lift": inside / area if area > 0 else None}


def pattern_cosine(pattern: Tensor, spec: AttackSpec, info: DatasetInfo) -> float:
    """Cosine between ``pattern`` (C, H, W) and what the trigger adds to a mid-grey image."""
    grey = torch.full((1, *info.shape), 0.5)
    added = (spec.trigger(info)(grey) - grey)[0]
    a, b = pattern.flatten().float(), added.flatten().float()
    denom = float(a.norm() * b.norm())
    return float(a @ b) / denom if denom > 0 else 0.0


def match(pattern: Tensor, spec: AttackSpec | None, info: DatasetInfo) -> dict:
    """How well ``pattern`` matches the known trigger: the region score when the trigger has a
    region, else the cosine with its pattern; ``{"known": False}`` without a trigger."""
    if spec is None:
        return {"known": False}
    trigger = spec.trigger(info)
    if trigger.per_image or spec.name == "wanet":
        return {"known": True, "kind": "none",
                "why": "the trigger is a warp or differs on every image: there is no one pattern "
                "to compare with"}  # fmt: skip
    region = trigger_region(spec, info)
    if region is not None:
        return {"known": True, "kind": "region", **region_score(pattern, region)}
    return {"known": True, "kind": "cosine", "cosine": pattern_cosine(pattern, spec, info)}


def describe_match(m: dict) -> str:
    """A :func:`match` in words ("" when the trigger is unknown): what the CLI, the run page and
    the Gallery say of it."""
    kind = m.get("kind")
    if kind == "region":
        return (f"{m['inside']:.0%} of the mean perturbation's mass lies in the trigger's region, "
                f"which covers {m['area']:.1%} of the image: lift {m['lift']:.1f} (1 is no "
                "better than an even spread)")  # fmt: skip
    if kind == "cosine":
        return ("the trigger covers the whole image, so there is no region to compare; the "
                f"cosine between the mean perturbation and what the trigger adds is "
                f"{m['cosine']:.2f} (1: the same direction, 0: unrelated)")  # fmt: skip
    if kind == "none":
        return f"no match is measured: {m['why']}"
    return ""


def describe_recovery(rec: dict) -> str:
    """A probe's ``recovery`` block (:func:`sau_core.probe.run.recovered_trigger`) in one
    sentence; "" when nothing was recovered."""
    if not rec.get("available"):
        return ""
    line = (f"of {rec['perturbations']} stored shared adversarial examples, the most land on "
            f"class {rec['top_class']}")  # fmt: skip
    if rec.get("target") is not None:
        line += f" (the attack's target: {rec['target']})"
    match_text = describe_match(rec.get("match") or {})
    return line + (f"; {match_text}" if match_text else "")
