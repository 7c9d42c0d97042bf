"""Pictures for people: trigger previews, triggered test images with predictions, probe tiles.

Plain tensors in, uint8 arrays (H, W, 3) out, so any front end (the dashboard, a notebook) can
show them. Small images are enlarged with nearest-neighbour so pixels stay sharp; perturbations
are mapped to grey = 0, white = the largest positive change, black = the largest negative one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..attacks import AttackSpec, create_trigger
from ..data import DatasetInfo, ImageData
from ..events import ProbeSnapshot
from ..metrics import predict

__all__ = [
    "ProbeTile",
    "TriggeredExample",
    "amplify",
    "best_round",
    "diverging",
    "diverging_legend",
    "outline",
    "heat_legend",
    "heat_to_uint8",
    "hstack",
    "png_bytes",
    "probe_tiles",
    "sample_images",
    "to_uint8",
    "trigger_pattern",
    "trigger_picture",
    "trigger_preview",
    "triggered_examples",
]


def to_uint8(img: Tensor, scale: int | None = None, target: int = 96) -> np.ndarray:
    """One image (C, H, W) in [0, 1] as uint8 (H*s, W*s, 3), enlarged ``s`` times (nearest).

    ``scale`` None: the largest integer factor that keeps the side at most ``target`` pixels.
    """
    if img.ndim != 3:
        raise ValueError(f"expected one image (C, H, W), got shape {tuple(img.shape)}")
    if scale is None:
        scale = max(1, target // max(img.shape[1:]))
    arr = (img.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    arr = arr.transpose(1, 2, 0)  # (H, W, C)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.repeat(np.repeat(arr, scale, axis=0), scale, axis=1)


def amplify(delta: Tensor) -> Tensor:
    """A perturbation (C, H, W) mapped to [0, 1]: 0.5 + delta / (2 max |delta|); grey when zero."""
    peak = float(delta.abs().max()) if delta.numel() else 0.0
    if peak < 1e-12:
        return torch.full_like(delta, 0.5)
    return (0.5 + delta / (2 * peak)).clamp(0, 1)


# The perturbation colours: blue where delta makes a pixel darker, grey where it leaves it, red
# where it makes it brighter; full colour at the scale (the run's eps), so every panel of a run
# reads on the same scale and none is blank (a uniform +eps is all red, not all white).
_NEG = torch.tensor([0.15, 0.39, 0.92])
_ZERO = torch.tensor([0.55, 0.55, 0.55])
_POS = torch.tensor([0.86, 0.15, 0.15])


def diverging(delta: Tensor, scale: float | None = None) -> Tensor:
    """A perturbation (C, H, W) as a colour picture (3, H, W) in [0, 1]: the channel mean of
    ``delta / scale`` (clipped to [-1, 1]) from blue (-1) through grey (0) to red (+1).

    ``scale`` None: the largest absolute value (a zero perturbation is plain grey)."""
    if delta.ndim != 3:
        raise ValueError(f"expected one perturbation (C, H, W), got shape {tuple(delta.shape)}")
    d = delta.detach().float().cpu().mean(0)  # (H, W)
    if scale is None:
        scale = float(d.abs().max()) if d.numel() else 0.0
    t = (d / scale).clamp(-1, 1) if scale and scale > 1e-12 else torch.zeros_like(d)
    pos, neg = t.clamp(min=0)[None], (-t).clamp(min=0)[None]  # (1, H, W)
    base = _ZERO[:, None, None]
    return base + pos * (_POS - _ZERO)[:, None, None] + neg * (_NEG - _ZERO)[:, None, None]


def diverging_legend(width: int = 192, height: int = 12) -> np.ndarray:
    """The perturbation colours as a bar: -scale (blue) left, 0 (grey) middle, +scale (red) right."""
    ramp = torch.linspace(-1, 1, width)[None].expand(height, width)[None]
    return to_uint8(diverging(ramp, 1.0), scale=1)


def outline(img: np.ndarray, mask: Tensor, color=(255, 140, 0), width: int = 3) -> np.ndarray:
    """``img`` (uint8 (H*s, W*s, 3), an enlargement of an H x W picture) with a ``width``-pixel
    line drawn just outside the region ``mask`` (bool (H, W)), so the region's own pixels stay
    visible. The picture gets a white margin of ``width`` so a region at the border is outlined
    on every side; a region that covers everything is framed."""
    h, w = mask.shape
    s = img.shape[0] // h
    big = np.repeat(np.repeat(mask.cpu().numpy().astype(bool), s, 0), s, 1)
    big = np.pad(big, width)
    out = np.pad(img, ((width, width), (width, width), (0, 0)), constant_values=255)
    grown = big.copy()
    for _ in range(width):
        g = grown.copy()
        g[1:] |= grown[:-1]
        g[:-1] |= grown[1:]
        g[:, 1:] |= grown[:, :-1]
        g[:, :-1] |= grown[:, 1:]
        grown = g
    out[grown & ~big] = color
    return out


# triggers whose change is too faint or too spread to see on the image itself: the Gallery shows
# their change of a sample, amplified (a warp changes nothing on a flat image; SSBA's residual is
# a few grey levels and depends on the image)
INVISIBLE = ("wanet", "ssba")


def trigger_picture(spec: AttackSpec, info: DatasetInfo, x: Tensor | None = None,
                    target: int = 128) -> np.ndarray:  # fmt: skip
    """The trigger as a uint8 picture that reads on any page: what it stamps, on a background
    that contrasts with it (dark behind a bright patch, light behind a dark one), with the
    pixels it changes outlined in orange. A warp (WaNet) changes nothing on a flat image and
    SSBA's residual is too faint to see, so their amplified change of the sample ``x``
    (C, H, W) is shown instead when given; a trigger made for each image (Input-aware) is shown
    on ``x``, as made for it."""
    trigger = create_trigger(spec.name, info, spec.params)
    flat = torch.stack([torch.zeros(info.shape), torch.ones(info.shape)])  # (2, C, H, W)
    stamped = trigger(flat)
    changed = (stamped - flat).abs().amax(1) > 1e-6  # (2, H, W)
    mask = changed[0] | changed[1]
    if spec.name in INVISIBLE and x is not None:
        pic = amplify(trigger(x[None])[0] - x)
    elif trigger.per_image and x is not None:  # Input-aware: the trigger made for x, on x
        pic = trigger(x[None])[0]
        mask = (pic - x).abs().amax(0) > 0.02
    elif bool(mask.all()):  # a trigger over the whole picture: on mid-grey, as it adds to it
        pic = trigger(torch.full((1, *info.shape), 0.5))[0]
    else:
        bright = float(stamped[0][:, mask].mean()) if mask.any() else 0.5
        pic = trigger(torch.full((1, *info.shape), 0.12 if bright > 0.5 else 0.88))[0]
    return outline(to_uint8(pic, target=target), mask)


def sample_images(data: ImageData, n: int = 8, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` test images, one per class in turn where possible (x (n, C, H, W), y (n,))."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=g)
    picked: list[int] = []
    seen: set[int] = set()
    for i in order.tolist():  # first one image per class, then fill up
        c = int(data.y[i])
        if c not in seen:
            seen.add(c)
            picked.append(i)
        if len(picked) >= n:
            break
    for i in order.tolist():
        if len(picked) >= n:
            break
        if i not in picked:
            picked.append(i)
    idx = torch.tensor(picked[:n], dtype=torch.long)
    return data.x[idx], data.y[idx]


def trigger_preview(
    x: Tensor, info: DatasetInfo, name: str, params: dict | None = None
) -> tuple[Tensor, Tensor]:
    """``x`` (B, C, H, W) with the trigger of attack ``name`` applied, and the change as colours
    (:func:`diverging`, (B, 3, H, W): red brighter, blue darker, on the batch's largest change).

    Raises ValueError for unknown attacks or parameters out of range, as the attack does.
    """
    trigger = create_trigger(name, info, params or {})
    xt = trigger(x)
    if not len(x):
        return xt, xt
    peak = float((xt - x).abs().max())
    return xt, torch.stack([diverging(d, peak) for d in (xt - x)])


def trigger_pattern(spec: AttackSpec, info: DatasetInfo, x: Tensor | None = None) -> Tensor:
    """What the trigger adds, as one picture (C, H, W) in [0, 1].

    Additive triggers (BadNets, Blended, SIG) are shown on a mid-grey canvas; a warp (WaNet)
    changes nothing on a flat image, so its amplified change of the sample ``x`` (C, H, W) is
    shown instead when given.
    """
    trigger = create_trigger(spec.name, info, spec.params)
    if spec.name in INVISIBLE and x is not None:
        return amplify(trigger(x[None])[0] - x)
    canvas = torch.full((1, *info.shape), 0.5)
    return trigger(canvas)[0]


@dataclass
class TriggeredExample:
    clean: Tensor  # (C, H, W)
    triggered: Tensor
    y: int  # true label
    pred_clean: int
    pred_triggered: int
    target: int  # the attack's label for this image


def triggered_examples(
    model: nn.Module, data: ImageData, spec: AttackSpec, n: int = 12, seed: int = 0
) -> list[TriggeredExample]:
    """``n`` test images outside the target class, clean and triggered, with the model's answers."""
    from ..attacks import target_labels

    keep = (
        data.y != spec.target
        if spec.label_rule == "all2one"
        else torch.ones_like(data.y, dtype=torch.bool)
    )
    pool = data.subset(keep.nonzero().squeeze(1))
    if len(pool) == 0:
        return []
    x, y = sample_images(pool, n, seed)
    xt = create_trigger(spec.name, data.info, spec.params)(x)
    device = next(model.parameters()).device
    pc = predict(model, x, device=device)
    pt = predict(model, xt, device=device)
    tgt = target_labels(y, spec, data.info.num_classes)
    return [
        TriggeredExample(x[i], xt[i], int(y[i]), int(pc[i]), int(pt[i]), int(tgt[i]))
        for i in range(len(y))
    ]


@dataclass
class ProbeTile:
    """One probe image at one round, ready to show."""

    clean: Tensor  # (C, H, W)
    perturbation: Tensor  # (3, H, W) colours: blue darker, grey unchanged, red brighter
    adversarial: Tensor  # x + delta, clipped to [0, 1] for display
    y: int
    h0: int  # h0's label for the adversarial example
    h: int  # h's label for it
    h0_clean: int
    h_clean: int
    shared: bool  # both models fooled into the same wrong class
    common: bool  # both fooled (maybe into different classes)
    linf: float  # largest pixel change


def best_round(shared: dict[int, int]) -> int:
    """The probe round to show first: the one with the most shared examples, the earliest on a
    tie, leaving out round 0 when there are others (before any update h is h0, so every
    example that fools h0 is trivially shared)."""
    rounds = [r for r in shared if r > 0] or list(shared)
    return max(rounds, key=lambda r: (shared[r], -r))


def probe_tiles(probe: ProbeSnapshot, scale: float | None = None) -> list[ProbeTile]:
    """The probe batch as tiles: clean, perturbation (:func:`diverging`, on one ``scale`` for
    the whole batch: the run's eps, or None for the batch's largest change), adversarial,
    labels, flags."""
    if scale is None:
        scale = float(probe.delta.abs().max()) if probe.delta.numel() else 0.0
    tiles = []
    for i in range(len(probe.y)):
        d = probe.delta[i]
        tiles.append(
            ProbeTile(
                clean=probe.x[i],
                perturbation=diverging(d, scale),
                adversarial=(probe.x[i] + d).clamp(0, 1),
                y=int(probe.y[i]),
                h0=int(probe.pred_h0_adv[i]),
                h=int(probe.pred_h_adv[i]),
                h0_clean=int(probe.pred_h0_clean[i]),
                h_clean=int(probe.pred_h_clean[i]),
                shared=bool(probe.shared[i]),
                common=bool(probe.common[i]),
                linf=float(d.abs().max()) if d.numel() else 0.0,
            )
        )
    return tiles


# A perceptually ordered colour map (anchors of matplotlib's "inferno"): black = no
# attribution, yellow-white = the shared scale's top.
_HEAT = torch.tensor(
    [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
     [250, 193, 39], [252, 255, 164]], dtype=torch.float32
)  # fmt: skip


def heat_to_uint8(heat: Tensor, scale: int | None = None, target: int = 96) -> np.ndarray:
    """A heat map (H, W) in [0, 1] as a coloured uint8 picture (H*s, W*s, 3), enlarged ``s``
    times as :func:`to_uint8` does. Values outside [0, 1] are clipped; NaN counts as 0."""
    if not isinstance(heat, Tensor) or heat.ndim != 2:
        shape = tuple(heat.shape) if isinstance(heat, Tensor) else type(heat).__name__
        raise ValueError(f"expected one heat map (H, W), got {shape}")
    v = heat.detach().float().cpu().nan_to_num(0.0).clamp(0, 1) * (len(_HEAT) - 1)
    lo = v.floor().long().clamp(max=len(_HEAT) - 2)
    frac = (v - lo)[..., None]
    rgb = _HEAT[lo] * (1 - frac) + _HEAT[lo + 1] * frac  # (H, W, 3)
    return to_uint8(rgb.permute(2, 0, 1) / 255.0, scale=scale, target=target)


def heat_legend(width: int = 192, height: int = 12) -> np.ndarray:
    """The colour scale of :func:`heat_to_uint8` as a horizontal bar, 0 left, 1 right."""
    ramp = torch.linspace(0, 1, width)[None].expand(height, width)
    return heat_to_uint8(ramp, scale=1)


def hstack(parts: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """uint8 pictures (H, W, 3) side by side, top-aligned, separated by white gaps."""
    if not parts:
        raise ValueError("hstack needs at least one picture")
    h = max(p.shape[0] for p in parts)
    out = []
    for i, p in enumerate(parts):
        if i:
            out.append(np.full((h, gap, 3), 255, dtype=np.uint8))
        if p.shape[0] < h:
            p = np.concatenate([p, np.full((h - p.shape[0], p.shape[1], 3), 255, np.uint8)])
        out.append(p)
    return np.concatenate(out, axis=1)


def png_bytes(img: np.ndarray) -> bytes:
    """A uint8 picture (H, W, 3) as PNG bytes."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG")
    return buf.getvalue()
