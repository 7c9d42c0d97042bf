"""Side by side: the backdoored model h0 and the purified model h explained on the same images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .focus import _normalise, shared_scale
from .methods import (
    _check_batch_size,
    _check_images,
    _eval_mode,
    _model_device_dtype,
    _targets,
    attribute,
)


# ------------------------------------------------------------------------------ side by side
@torch.no_grad()
def predict_proba(model: nn.Module, x: Tensor, *, batch_size: int = 256) -> Tensor:
    """Softmax probabilities (N, K) float32 on the CPU, computed in eval mode on the model's
    device (each module's mode is restored after)."""
    _check_images(x)
    _check_batch_size(batch_size)
    device, dtype = _model_device_dtype(model)
    with _eval_mode(model):
        out = [
            model(x[i : i + batch_size].to(device, dtype)).float().softmax(1).cpu()
            for i in range(0, len(x), batch_size)
        ]
    if out:
        return torch.cat(out)
    info = getattr(model, "info", None)
    return torch.zeros(0, int(getattr(info, "num_classes", 0)))


@dataclass
class Explanation:
    """Several models explained on the same images with one method, maps on one colour scale."""

    method: str
    maps: list[Tensor]  # per model: (B, H, W) float32 CPU in [0, 1], one shared scale
    scale: Tensor  # (B,) the attribution mass that maps to 1 (see shared_scale)
    pred: list[Tensor]  # per model: (B,) int64, the predicted class
    conf: list[Tensor]  # per model: (B,) float32, the softmax probability of the prediction
    target: list[Tensor]  # per model: (B,) int64, the class each map explains


def explain(
    models: Sequence[nn.Module],
    x: Tensor,
    method: str = "saliency",
    *,
    target: int | Sequence[int] | Tensor | None = None,
    percentile: float = 99.0,
    per_image: bool = True,
    batch_size: int = 64,
    **params: Any,
) -> Explanation:
    """One row of the Explain grid per image: each model's prediction, confidence and heat map.

    Args:
        models: e.g. ``(h0, h)``, the backdoored and the purified model.
        x: images (B, C, H, W) in [0, 1] (clean, triggered, adversarial or uploaded).
        method, params: as in :func:`attribute`.
        target: None (default) for each model's own prediction, else the class(es) explained
            for every model.
        percentile, per_image: the shared scale (:func:`shared_scale`).
        batch_size: images per chunk.

    Returns:
        An :class:`Explanation` whose maps share one scale across the models.
    """
    if isinstance(models, nn.Module) or not models:
        raise ValueError("models must be a non-empty sequence of models, e.g. (h0, h)")
    probs = [predict_proba(m, x, batch_size=batch_size) for m in models]  # (B, K) each
    preds = [p.argmax(1) for p in probs]
    confs = [p.gather(1, c[:, None]).squeeze(1) for p, c in zip(probs, preds, strict=True)]
    # None: each model explains its own prediction; else the same class(es) for every model
    targets = preds if target is None else [_targets(target, len(x), p.shape[1]) for p in probs]
    attrs = [
        attribute(m, x, t, method, batch_size=batch_size, **params)
        for m, t in zip(models, targets, strict=True)
    ]
    scale = shared_scale(*attrs, percentile=percentile, per_image=per_image)
    return Explanation(method, _normalise(attrs, scale), scale, preds, confs, targets)


@dataclass
class GridExplanation:
    """Two models (or more) explained on several versions of the same images (clean, triggered,
    ...) with one method; every map of one image row shares ONE scale, across models and
    versions, so brightness can be compared anywhere in the row."""

    method: str
    columns: list[str]  # the versions' names, e.g. ["clean", "triggered"]
    images: list[Tensor]  # per version: (B, C, H, W) as given
    maps: list[list[Tensor]]  # [version][model]: (B, H, W) float32 CPU in [0, 1]
    pred: list[list[Tensor]]  # [version][model]: (B,) int64
    conf: list[list[Tensor]]  # [version][model]: (B,) float32
    scale: Tensor  # (B,) attribution mass that maps to 1 (or all equal when not per image)


def explain_grid(
    models: Sequence[nn.Module],
    versions: Mapping[str, Tensor],
    method: str = "saliency",
    *,
    percentile: float = 99.0,
    per_image: bool = True,
    batch_size: int = 64,
    **params: Any,
) -> GridExplanation:
    """The Explain grid: each model's map, prediction and confidence on each version of the
    images, with one colour scale per image row shared by every model and version.

    Args:
        models: e.g. ``(h0, h)``; each explains its own prediction.
        versions: name -> images (B, C, H, W) in [0, 1], the same B for all (row i of every
            version is the same picture, e.g. clean and with the trigger).
        method, params, percentile, per_image, batch_size: as in :func:`explain`.
    """
    if isinstance(models, nn.Module) or not models:
        raise ValueError("models must be a non-empty sequence of models, e.g. (h0, h)")
    if not isinstance(versions, Mapping) or not versions:
        raise ValueError("versions must be a non-empty dict of name -> images (B, C, H, W)")
    names = list(versions)
    for name in names:
        _check_images(versions[name], f"versions[{name!r}]")
    sizes = {len(versions[n]) for n in names}
    if len(sizes) != 1:
        raise ValueError(f"every version needs the same number of images, got {sorted(sizes)}")
    attrs, preds, confs = [], [], []
    for name in names:
        x = versions[name]
        probs = [predict_proba(m, x, batch_size=batch_size) for m in models]  # (B, K) each
        pred = [p.argmax(1) for p in probs]
        preds.append(pred)
        confs.append([p.gather(1, c[:, None]).squeeze(1) for p, c in zip(probs, pred, strict=True)])
        attrs.append(
            [
                attribute(m, x, t, method, batch_size=batch_size, **params)
                for m, t in zip(models, pred, strict=True)
            ]
        )
    flat = [a for row in attrs for a in row]
    scale = shared_scale(*flat, percentile=percentile, per_image=per_image)
    maps = [_normalise(row, scale) for row in attrs]
    return GridExplanation(method, names, [versions[n] for n in names], maps, preds, confs, scale)
