"""Explanations on Captum: attribution maps, heat maps on one colour scale, and trigger focus.

"What is the model looking at, and did SAU change that?" Attribution methods answer the first
half per image; :func:`heatmaps` puts the maps of the backdoored model h0 and the purified model h
on ONE colour scale so the two can be compared; the trigger focus (:func:`trigger_focus`,
:func:`focus_stats`, :func:`compare_focus`) answers the second half with a number: the share of
attribution mass inside the pixels the trigger changes.

The call shape is Captum's, with the model passed in: ``attribute(model, x, target, method,
**params)``. Registered methods (:data:`METHODS`; adding one is one new entry):

- ``saliency``: the absolute input gradient (Simonyan et al., 2013, arXiv 1312.6034).
- ``integrated_gradients``: gradients integrated from a baseline image (Sundararajan et al.,
  2017, arXiv 1703.01365).
- ``input_x_gradient``: input times gradient (Shrikumar et al., 2016, arXiv 1605.01713).
- ``grad_cam``: Grad-CAM on the model's last conv block, upsampled to the image (Selvaraju et
  al., 2017, arXiv 1610.02391).
- ``occlusion``: the target score's drop when a sliding patch is blanked (Zeiler & Fergus, 2014,
  arXiv 1311.2901).

Each method's parameters are a frozen dataclass whose fields carry form metadata (``help``,
``min``, ``max``, ``choices``), as the attack configs do; :func:`method_schema` lists them for a
form. Images are float tensors (B, C, H, W) in [0, 1] (normalisation is the model's first
layer), so every map is in pixel space. Captum is imported on the first computation only, so the
registry and the schemas are available without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ._config import ParamConfig, config_from, config_schema, param

__all__ = [
    "METHODS",
    "Explanation",
    "FocusComparison",
    "FocusStats",
    "GridExplanation",
    "GradCamConfig",
    "InputXGradientConfig",
    "IntegratedGradientsConfig",
    "MethodEntry",
    "OcclusionConfig",
    "SaliencyConfig",
    "attribute",
    "compare_focus",
    "explain",
    "explain_grid",
    "focus_stats",
    "heatmaps",
    "list_methods",
    "make_method_config",
    "method_schema",
    "predict_proba",
    "shared_scale",
    "trigger_focus",
    "trigger_mask",
]


# ------------------------------------------------------------------------------------ configs
class _MethodConfig(ParamConfig):
    """Base of the method configs: ``method`` (each config's registry name) labels messages;
    :meth:`validate` and :meth:`limits` take the image shape (C, H, W)."""

    method: ClassVar[str] = ""

    @property
    def label(self) -> str:  # type: ignore[override]
        return self.method


@dataclass(frozen=True)
class SaliencyConfig(_MethodConfig):
    """Saliency (Simonyan et al., 2013): the gradient of the target logit w.r.t. the pixels."""

    method: ClassVar[str] = "saliency"

    # the paper's saliency map is the gradient's absolute value; off keeps the sign
    abs: bool = param(True, "Take the gradient's absolute value (the paper's saliency map).")


@dataclass(frozen=True)
class IntegratedGradientsConfig(_MethodConfig):
    """Integrated Gradients (Sundararajan et al., 2017): gradients along the straight path from a
    constant baseline image to x, times ``x - baseline``; they sum to f(x) - f(baseline)."""

    method: ClassVar[str] = "integrated_gradients"

    # points on the path (Captum's default 50); more is more exact and slower
    n_steps: int = param(50, "Points on the path from the baseline to the image.", min=1, max=1000)
    # the baseline image is this value in every pixel (0: a black image, the usual choice)
    baseline: float = param(
        0.0, "Pixel value of the baseline image (0 is black).", min=0.0, max=1.0
    )
    # quadrature of the path integral (Captum's default: Gauss-Legendre)
    integration: str = param(
        "gausslegendre",
        "Quadrature rule of the path integral.",
        choices=["gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left",
                 "riemann_right"],
    )  # fmt: skip


@dataclass(frozen=True)
class InputXGradientConfig(_MethodConfig):
    """Input x Gradient (Shrikumar et al., 2016): the pixels times the target logit's gradient."""

    method: ClassVar[str] = "input_x_gradient"


@dataclass(frozen=True)
class GradCamConfig(_MethodConfig):
    """Grad-CAM (Selvaraju et al., 2017): a conv layer's activations weighted by their mean
    gradient, summed over channels, upsampled to the image size."""

    method: ClassVar[str] = "grad_cam"

    # the paper keeps only positive evidence (a ReLU on the coarse map, before upsampling)
    relu: bool = param(True, "Keep only positive evidence (ReLU, as in the paper).")
    # how the coarse map is brought to the image size (Captum's LayerAttribution.interpolate)
    upsample: str = param(
        "bilinear", "Upsampling of the coarse map to the image.", choices=["bilinear", "nearest"]
    )
    # "" = the model's last conv block (Classifier.feature_layer); else a dotted module name
    layer: str = param("", "Dotted name of the conv layer; empty for the model's last conv block.")


@dataclass(frozen=True)
class OcclusionConfig(_MethodConfig):
    """Occlusion (Zeiler & Fergus, 2014): slide a blank square over the image and record how much
    the target logit drops; each pixel gets the mean drop of the windows covering it."""

    method: ClassVar[str] = "occlusion"

    # 0 = about 1/8 of the image side, at least 2 pixels (2 at 8 and 16 px, 4 at 32 px)
    window: int = param(
        0, "Side of the occluding square in pixels; 0 picks ~1/8 of the image side.", min=0
    )
    # 0 = half the window (at least 1): every pixel is covered by several windows
    stride: int = param(0, "Step between windows in pixels; 0 picks half the window.", min=0)
    # the value the window is filled with (0: black)
    baseline: float = param(0.0, "Pixel value inside the window (0 is black).", min=0.0, max=1.0)

    @classmethod
    def limits(cls, shape: Sequence[int]) -> dict[str, dict[str, Any]]:
        side = min(shape[-2:])
        return {"window": {"max": side}, "stride": {"max": side}}

    def sizes(self, shape: Sequence[int]) -> tuple[int, int]:
        """The window and stride actually used for images of shape (C, H, W)."""
        window = self.window or min(max(2, min(shape[-2:]) // 8), min(shape[-2:]))
        return window, self.stride or max(1, window // 2)


# ------------------------------------------------------------------------------------ methods
# Each runner gets a detached copy of one chunk on the model's device (B, C, H, W), the targets
# (B,) int64 on that device, the validated config and the caller's batch size, and returns the
# attributions (B, C, H, W), or (B, 1, H, W) for the single-channel methods.
def _saliency(model: nn.Module, x: Tensor, target: Tensor, cfg: Any, batch_size: int) -> Tensor:
    from captum.attr import Saliency

    return Saliency(model).attribute(x, target=target, abs=cfg.abs)


def _integrated_gradients(
    model: nn.Module, x: Tensor, target: Tensor, cfg: Any, batch_size: int
) -> Tensor:
    from captum.attr import IntegratedGradients

    return IntegratedGradients(model).attribute(
        x,
        baselines=cfg.baseline,
        target=target,
        n_steps=cfg.n_steps,
        method=cfg.integration,
        internal_batch_size=max(batch_size, len(x)),  # at most this many images per forward
    )


def _input_x_gradient(
    model: nn.Module, x: Tensor, target: Tensor, cfg: Any, batch_size: int
) -> Tensor:
    from captum.attr import InputXGradient

    return InputXGradient(model).attribute(x, target=target)


def _feature_layer(model: nn.Module, name: str) -> nn.Module:
    name = name or getattr(model, "feature_layer", "")
    if not name:
        raise ValueError(
            "grad_cam needs a conv layer: the model has no feature_layer (a Classifier from "
            "sau_core.models has one); name one with the 'layer' parameter"
        )
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"grad_cam: the model has no layer {name!r}") from None


def _grad_cam(model: nn.Module, x: Tensor, target: Tensor, cfg: Any, batch_size: int) -> Tensor:
    from captum.attr import LayerAttribution, LayerGradCam

    layer = _feature_layer(model, cfg.layer)
    cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=cfg.relu)
    if not isinstance(cam, Tensor) or cam.ndim != 4:
        shape = tuple(cam.shape) if isinstance(cam, Tensor) else type(cam).__name__
        raise ValueError(
            f"grad_cam needs a layer with (B, C, h, w) output, {cfg.layer or 'feature_layer'} "
            f"gives {shape}"
        )
    return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), cfg.upsample)  # (B, 1, H, W)


def _occlusion(model: nn.Module, x: Tensor, target: Tensor, cfg: Any, batch_size: int) -> Tensor:
    from captum.attr import Occlusion

    channels = x.shape[1]
    window, stride = cfg.sizes(x.shape[1:])
    return Occlusion(model).attribute(
        x,
        sliding_window_shapes=(channels, window, window),
        strides=(channels, stride, stride),
        baselines=cfg.baseline,
        target=target,
        perturbations_per_eval=max(1, batch_size // len(x)),  # ~batch_size images per forward
    )


@dataclass(frozen=True)
class MethodEntry:
    """A registered attribution method: its config class, its runner, a display label, a help
    line, its paper, and whether its maps have one channel (Grad-CAM, (B, 1, H, W)) rather than
    the image's (B, C, H, W)."""

    config: type
    run: Callable[[nn.Module, Tensor, Tensor, Any, int], Tensor]
    label: str
    help: str
    paper: str
    single_channel: bool = False


METHODS: dict[str, MethodEntry] = {
    "saliency": MethodEntry(
        SaliencyConfig,
        _saliency,
        "Saliency",
        "How much each pixel's change would move the class score (absolute gradient).",
        "https://arxiv.org/abs/1312.6034",
    ),
    "integrated_gradients": MethodEntry(
        IntegratedGradientsConfig,
        _integrated_gradients,
        "Integrated Gradients",
        "Each pixel's share of the class score relative to a black image; the shares add up.",
        "https://arxiv.org/abs/1703.01365",
    ),
    "input_x_gradient": MethodEntry(
        InputXGradientConfig,
        _input_x_gradient,
        "Input x Gradient",
        "Pixel value times gradient: a one-step version of Integrated Gradients.",
        "https://arxiv.org/abs/1605.01713",
    ),
    "grad_cam": MethodEntry(
        GradCamConfig,
        _grad_cam,
        "Grad-CAM",
        "Which regions of the last conv layer support the class, upsampled to the image.",
        "https://arxiv.org/abs/1610.02391",
        single_channel=True,
    ),
    "occlusion": MethodEntry(
        OcclusionConfig,
        _occlusion,
        "Occlusion",
        "How much the class score drops when a small square of the image is blanked out.",
        "https://arxiv.org/abs/1311.2901",
    ),
}


def list_methods() -> list[str]:
    """The registered method names, in registry order."""
    return list(METHODS)


def _entry(name: str) -> MethodEntry:
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown explanation method {name!r}; choose from {', '.join(METHODS)}"
        ) from None


def make_method_config(name: str, params: Mapping[str, Any] | Any | None = None) -> Any:
    """The config of method ``name`` with ``params`` (a dict of overrides, a config or None).

    Checks parameter names, types and the size-independent bounds; ValueError otherwise.
    """
    return config_from("method", name, _entry(name).config, params)


def method_schema(name: str, shape: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Form fields of method ``name``: dicts with ``name``, ``type`` ("int", "float", "str",
    "bool"), ``default``, ``help`` and, where they apply, ``min``, ``max`` and ``choices``; with
    ``shape`` (C, H, W) the size-dependent bounds are resolved too."""
    return config_schema(_entry(name).config, shape)


# ---------------------------------------------------------------------------------- attribute
def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode for the block; each module's own mode restored after.
    Parameters are left alone: Captum asks autograd for input gradients only, so no ``.grad``
    is written and ``requires_grad`` is never changed."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _check_images(x: Any, what: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{what} must be a tensor (B, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{what} must have shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{what} must be float images in [0, 1], got {x.dtype}")


def _check_batch_size(batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")


def _num_classes(model: nn.Module, x: Tensor, device: torch.device, dtype: torch.dtype) -> int:
    info = getattr(model, "info", None)
    if info is not None and hasattr(info, "num_classes"):
        return int(info.num_classes)
    with torch.no_grad(), _eval_mode(model):
        return int(model(x[:1].to(device, dtype)).shape[1])


def _targets(target: Any, n: int, num_classes: int) -> Tensor | None:
    """``target`` as int64 (n,) on the CPU, or None (the model's own prediction)."""
    if target is None:
        return None
    if isinstance(target, bool):
        raise ValueError(f"target must be a class index or one per image, got {target!r}")
    if isinstance(target, int):
        t = torch.full((n,), target, dtype=torch.long)
    else:
        try:
            t = torch.as_tensor(target).detach().cpu()
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(
                f"target must be an int, a sequence of ints or a tensor, got {target!r}"
            ) from None
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"target must hold integer class indices, got dtype {t.dtype}")
        if t.ndim == 0:
            t = t.expand(n)
        if t.shape != (n,):
            raise ValueError(
                f"target must be one class or one per image ({n}), got {tuple(t.shape)}"
            )
        t = t.long()
    if n and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"target classes must be in [0, {num_classes - 1}], got {target!r}")
    return t


def attribute(
    model: nn.Module,
    x: Tensor,
    target: int | Sequence[int] | Tensor | None = None,
    method: str = "saliency",
    *,
    batch_size: int = 64,
    **params: Any,
) -> Tensor:
    """Attribute the ``target`` logit of ``model`` to the pixels of ``x`` with ``method``.

    Captum's call shape with the model passed in: ``attribute(model, x, 3, "saliency")`` is
    ``Saliency(model).attribute(x, target=3)``, run in chunks of ``batch_size`` images on the
    model's device, with every module in eval mode (each module's own mode is restored after).
    The model's parameters and ``x`` are left untouched (Captum works on a detached copy).

    Args:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits; a
            :class:`~sau_core.models.Classifier` for ``grad_cam`` (its ``feature_layer``).
        x: images (N, C, H, W), float, on any device.
        target: the class to explain: an int for all images, one per image (a sequence or an
            (N,) tensor), or None (default) for each image's predicted class.
        method: a key of :data:`METHODS` (default "saliency").
        batch_size: images per chunk (default 64); Integrated Gradients and Occlusion also put at
            most about this many path points or occluded images into one forward.
        **params: the method's parameters (see :func:`method_schema`); unknown names, wrong
            types and out-of-range values raise ValueError.

    Returns:
        Attributions (N, C, H, W) float32 on ``x``'s device; (N, 1, H, W) for ``grad_cam``.
    """
    entry = _entry(method)
    config = make_method_config(method, params)
    _check_images(x)
    config.validate(tuple(x.shape[1:]))
    _check_batch_size(batch_size)
    n, channels, height, width = x.shape
    out_shape = (1 if entry.single_channel else channels, height, width)
    if n == 0:
        return torch.zeros((0, *out_shape), device=x.device)
    device, dtype = _model_device_dtype(model)
    targets = None if target is None else _targets(target, n, _num_classes(model, x, device, dtype))
    chunks = []
    with _eval_mode(model), torch.enable_grad():
        for i in range(0, n, batch_size):
            xb = x[i : i + batch_size].detach().to(device, dtype, copy=True)  # (b, C, H, W)
            xb.requires_grad_(True)  # our copy; Captum warns when it has to do this itself
            if targets is None:
                with torch.no_grad():
                    tb = model(xb).argmax(1)
            else:
                tb = targets[i : i + batch_size].to(device)
            attr = entry.run(model, xb, tb, config, batch_size)
            chunks.append(attr.detach().float().to(x.device))
    return torch.cat(chunks)


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
