"""Attribution methods on Captum behind one call, ``attribute(model, x, target, method, **params)``:
their configs (paper defaults, form metadata), the registry :data:`METHODS`, and the checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..config import ParamConfig, config_from, config_schema, param


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
