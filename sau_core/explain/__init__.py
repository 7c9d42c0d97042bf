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

from .focus import (
    FocusComparison,
    FocusStats,
    compare_focus,
    focus_stats,
    heatmaps,
    shared_scale,
    trigger_focus,
    trigger_mask,
)
from .grid import Explanation, GridExplanation, explain, explain_grid, predict_proba
from .methods import (
    METHODS,
    GradCamConfig,
    InputXGradientConfig,
    IntegratedGradientsConfig,
    MethodEntry,
    OcclusionConfig,
    SaliencyConfig,
    attribute,
    list_methods,
    make_method_config,
    method_schema,
)

__all__ = [
    "Explanation",
    "FocusComparison",
    "FocusStats",
    "GradCamConfig",
    "GridExplanation",
    "InputXGradientConfig",
    "IntegratedGradientsConfig",
    "METHODS",
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
