"""Tests of sau_core.explain: attribution methods, shared heat-map scale, trigger focus.

Grouped kornia-style: smoke, exception, cardinality, feature. The numbers are checked on a linear
model small enough to work out by hand (f(x) = W x + b, the normalisation being the identity):
Saliency is |W[target]|, Input x Gradient and Integrated Gradients are x * W[target]. Tests
parametrised over ``list_methods()`` and ``MODELS`` cover a new entry automatically; models whose
construction alone takes seconds on a CPU (``SLOW_BUILD``) run with ``-m slow`` only.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import pytest
import torch
from torch import nn

from sau_core.attacks import create_trigger
from sau_core.data import DatasetInfo
from sau_core.explain import (
    METHODS,
    Explanation,
    FocusComparison,
    FocusStats,
    attribute,
    compare_focus,
    explain,
    focus_stats,
    heatmaps,
    list_methods,
    make_method_config,
    method_schema,
    predict_proba,
    shared_scale,
    trigger_focus,
    trigger_mask,
)
from sau_core.models import MODELS, Classifier, create_model

METHOD_NAMES = list_methods()
# the cheapest settings of each method, for the tests that only check plumbing
TINY = {"integrated_gradients": {"n_steps": 4}, "occlusion": {"window": 4, "stride": 4}}
TINIEST = {"integrated_gradients": {"n_steps": 2}, "occlusion": {"window": 8}}  # 1 window
SLOW_BUILD = {"vgg19_bn"}  # torchvision builds its 100M-parameter head first: ~10 s on a CPU
GEOMETRIES = {"1x8x8": (1, 8, 8), "1x16x16": (1, 16, 16), "3x16x16": (3, 16, 16)}
K = 10


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors here are tiny: intra-op threads gain nothing, and on a busy CPU their
    hand-offs cost 100x the work (0.4 s instead of 2 ms per call)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_info(shape=(1, 8, 8), num_classes=K, mean=0.3, std=0.35) -> DatasetInfo:
    c = shape[0]
    return DatasetInfo("fake", num_classes, tuple(shape), (mean,) * c, (std,) * c, natural=False)


def images(shape=(1, 8, 8), n=4, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *shape), generator=g)


def linear_model(weight: torch.Tensor, shape=(1, 8, 8), bias: float = 0.25) -> Classifier:
    """f(x) = weight @ x.flatten() + bias: Flatten + Linear behind an identity normalisation."""
    k = weight.shape[0]
    linear = nn.Linear(weight.shape[1], k)
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.fill_(bias)
    info = make_info(shape, k, mean=0.0, std=1.0)
    return Classifier("linear", info, nn.Sequential(nn.Flatten(), linear), feature_layer="")


def random_linear(shape=(1, 8, 8), seed=1) -> Classifier:
    g = torch.Generator().manual_seed(seed)
    return linear_model(torch.randn(K, math.prod(shape), generator=g), shape)


def region_linear(mask: torch.Tensor, shape=(1, 8, 8)) -> Classifier:
    """A linear model whose every class looks only at the pixels of ``mask`` (H, W)."""
    w = mask.float().expand(shape).flatten()
    weight = torch.stack([w * (c + 1) for c in range(K)])
    return linear_model(weight, shape)


@functools.cache
def small_cnn(shape=(1, 8, 8)) -> Classifier:
    """A seeded small CNN (untrained) in eval mode; tests that change its state use a copy."""
    return create_model("small_cnn", make_info(shape), seed=0).eval()


def badnets(shape=(1, 8, 8)):
    return create_trigger("badnets", make_info(shape))  # 3x3 white square, bottom right


def patch_mask(shape=(1, 8, 8), size=3) -> torch.Tensor:
    mask = torch.zeros(shape[1:], dtype=torch.bool)
    mask[-size:, -size:] = True
    return mask


# ---------------------------------------------------------------------------------------- smoke
class TestSmoke:
    def test_registry(self):
        assert list(METHODS) == METHOD_NAMES
        assert set(METHOD_NAMES) >= {
            "saliency",
            "integrated_gradients",
            "input_x_gradient",
            "grad_cam",
            "occlusion",
        }

    @pytest.mark.parametrize("name", METHOD_NAMES)
    def test_entry_is_data_for_a_form(self, name):
        entry = METHODS[name]
        assert entry.label and entry.help and entry.paper.startswith("https://")
        config = entry.config()
        assert dataclasses.is_dataclass(config) and type(config).__dataclass_params__.frozen
        for field in method_schema(name):
            assert field["type"] in ("int", "float", "str", "bool")
            assert field["help"]
            assert field["default"] == getattr(config, field["name"])
            if "choices" in field:
                assert field["default"] in field["choices"]

    def test_schema_resolves_size_limits(self):
        fields = {f["name"]: f for f in method_schema("occlusion", (1, 16, 16))}
        assert fields["window"]["max"] == 16 and fields["stride"]["max"] == 16
        assert "max" not in {f["name"]: f for f in method_schema("occlusion")}["window"]

    def test_make_method_config(self):
        assert make_method_config("integrated_gradients", {"n_steps": 8}).n_steps == 8
        config = make_method_config("occlusion", None)
        assert make_method_config("occlusion", config) is config

    @pytest.mark.parametrize("geometry", list(GEOMETRIES))
    @pytest.mark.parametrize("method", METHOD_NAMES)
    def test_every_method_on_small_cnn(self, method, geometry):
        shape = GEOMETRIES[geometry]
        x = images(shape, n=3)
        attr = attribute(small_cnn(shape), x, 2, method, **TINY.get(method, {}))
        channels = 1 if METHODS[method].single_channel else shape[0]
        assert attr.shape == (3, channels, *shape[1:])
        assert attr.dtype == torch.float32 and attr.device == x.device
        assert torch.isfinite(attr).all()

    @pytest.mark.parametrize(
        "arch",
        [
            pytest.param(a, marks=pytest.mark.slow) if a in SLOW_BUILD else a
            for a in MODELS
            if a != "small_cnn"
        ],
    )
    def test_every_method_on_every_registered_model(self, arch):
        shape = (1, 8, 8)
        model = create_model(arch, make_info(shape), seed=0)
        x = images(shape, n=1)
        for method in METHOD_NAMES:
            attr = attribute(model, x, 1, method, **TINIEST.get(method, {}))
            assert attr.shape[0] == 1 and attr.shape[2:] == shape[1:], (arch, method)
            assert torch.isfinite(attr).all(), (arch, method)

    def test_explain_pair(self):
        shape = (1, 8, 8)
        h0, h = small_cnn(shape), random_linear(shape)
        ex = explain((h0, h), images(shape, n=3), "saliency")
        assert isinstance(ex, Explanation) and ex.method == "saliency"
        assert len(ex.maps) == len(ex.pred) == len(ex.conf) == len(ex.target) == 2

    def test_runs_under_no_grad(self):
        x = images()
        with torch.no_grad():
            attr = attribute(random_linear(), x, 0, "saliency")
        assert attr.abs().sum() > 0


# ------------------------------------------------------------------------------------ exceptions
class TestExceptions:
    def test_unknown_method(self):
        with pytest.raises(ValueError, match="unknown explanation method 'lime'.*saliency"):
            attribute(random_linear(), images(), 0, "lime")

    def test_unknown_parameter(self):
        with pytest.raises(ValueError, match=r"unknown parameter\(s\) 'steps'.*n_steps"):
            attribute(random_linear(), images(), 0, "integrated_gradients", steps=4)
        with pytest.raises(ValueError, match="it takes none"):
            attribute(random_linear(), images(), 0, "input_x_gradient", abs=True)

    @pytest.mark.parametrize(
        ("method", "params", "message"),
        [
            ("integrated_gradients", {"n_steps": 0}, "'n_steps' must be >= 1"),
            ("integrated_gradients", {"n_steps": "8"}, "'n_steps' must be an integer"),
            ("integrated_gradients", {"n_steps": True}, "'n_steps' must be an integer"),
            ("integrated_gradients", {"baseline": 1.5}, "'baseline' must be <= 1"),
            ("integrated_gradients", {"integration": "simpson"}, "'integration' must be one of"),
            ("saliency", {"abs": 1}, "'abs' must be true or false"),
            ("grad_cam", {"upsample": "cubic"}, "'upsample' must be one of"),
            ("occlusion", {"window": 9}, "'window' must be <= 8"),
            ("occlusion", {"stride": -1}, "'stride' must be >= 0"),
            ("occlusion", {"baseline": math.nan}, "'baseline' must be a finite number"),
        ],
    )
    def test_bad_parameter_values(self, method, params, message):
        with pytest.raises(ValueError, match=message):
            attribute(small_cnn(), images(), 0, method, **params)

    def test_wrong_config_instance(self):
        with pytest.raises(ValueError, match="takes a SaliencyConfig"):
            make_method_config("saliency", make_method_config("occlusion"))
        with pytest.raises(ValueError, match="must be a dict"):
            make_method_config("saliency", [("abs", True)])

    @pytest.mark.parametrize(
        ("target", "message"),
        [
            (10, r"in \[0, 9\]"),
            (-1, r"in \[0, 9\]"),
            ([0, 1], r"one per image \(4\)"),
            (torch.tensor([0.0, 1.0, 2.0, 3.0]), "integer class indices"),
            (True, "class index"),
            ("3", "integer class indices|an int"),
        ],
    )
    def test_bad_target(self, target, message):
        with pytest.raises(ValueError, match=message):
            attribute(small_cnn(), images(), target, "saliency")

    def test_target_range_without_class_count(self):
        plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))  # no .info: K read from a forward
        with pytest.raises(ValueError, match=r"in \[0, 4\]"):
            attribute(plain, images(), 5, "saliency")
        assert attribute(plain, images(), 4, "saliency").shape == (4, 1, 8, 8)

    @pytest.mark.parametrize(
        ("x", "message"),
        [
            ([[0.5]], "must be a tensor"),
            (torch.rand(1, 8, 8), r"must have shape \(B, C, H, W\)"),
            (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), "float images"),
        ],
    )
    def test_bad_images(self, x, message):
        with pytest.raises(ValueError, match=message):
            attribute(small_cnn(), x, 0, "saliency")

    @pytest.mark.parametrize("batch_size", [0, -3, 2.0, True])
    def test_bad_batch_size(self, batch_size):
        with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
            attribute(small_cnn(), images(), 0, "saliency", batch_size=batch_size)

    def test_grad_cam_needs_a_conv_layer(self):
        with pytest.raises(ValueError, match="no feature_layer"):
            attribute(random_linear(), images(), 0, "grad_cam")
        with pytest.raises(ValueError, match="no layer 'net.nope'"):
            attribute(small_cnn(), images(), 0, "grad_cam", layer="net.nope")
        with pytest.raises(ValueError, match=r"\(B, C, h, w\) output"):
            attribute(small_cnn(), images(), 0, "grad_cam", layer="net.head")

    def test_heatmaps_bad_input(self):
        a = torch.rand(2, 1, 8, 8)
        with pytest.raises(ValueError, match="same images"):
            heatmaps(a, torch.rand(3, 1, 8, 8))
        with pytest.raises(ValueError, match="same images"):
            heatmaps(a, torch.rand(2, 1, 4, 4))
        with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\]"):
            heatmaps(a, percentile=0)
        with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\]"):
            heatmaps(a, percentile=101)
        with pytest.raises(ValueError, match="at least one"):
            heatmaps()
        with pytest.raises(ValueError, match=r"\(B, C, H, W\) or \(B, H, W\)"):
            heatmaps(torch.rand(8, 8))

    def test_trigger_focus_bad_mask(self):
        with pytest.raises(ValueError, match="mask must be"):
            trigger_focus(torch.rand(2, 1, 8, 8), torch.ones(4, 4, dtype=torch.bool))

    def test_focus_stats_bad_arguments(self):
        model, x, trig = random_linear(), images(), badnets()
        with pytest.raises(ValueError, match="unknown explanation method"):
            focus_stats(model, x, trig, ["saliency", "shap"])
        with pytest.raises(ValueError, match="not being run"):
            focus_stats(model, x, trig, "saliency", params={"occlusion": {"window": 2}})

    @pytest.mark.parametrize("tol", [-0.1, math.nan, "0"])
    def test_bad_tolerance(self, tol):
        with pytest.raises(ValueError, match="tol must be a number >= 0"):
            trigger_mask(badnets(), images(), tol)

    def test_explain_needs_a_sequence_of_models(self):
        with pytest.raises(ValueError, match="sequence of models"):
            explain(small_cnn(), images())


# ----------------------------------------------------------------------------------- cardinality
class TestCardinality:
    @pytest.mark.parametrize("method", METHOD_NAMES)
    def test_empty_batch(self, method):
        attr = attribute(small_cnn(), images(n=0), 0, method)
        assert attr.shape == (0, 1, 8, 8)

    def test_heatmaps_and_scale_shapes(self):
        cam, sal = torch.rand(3, 1, 8, 8), torch.randn(3, 3, 8, 8)
        maps = heatmaps(cam, sal, torch.rand(3, 8, 8))
        assert len(maps) == 3
        for m in maps:
            assert m.shape == (3, 8, 8) and m.dtype == torch.float32
            assert m.min() >= 0 and m.max() <= 1
        assert shared_scale(cam, sal).shape == (3,)
        assert shared_scale(cam, sal, per_image=False).shape == (3,)

    def test_trigger_mask_and_focus_shapes(self):
        x = images((3, 16, 16), n=5)
        mask = trigger_mask(create_trigger("badnets", make_info((3, 16, 16))), x)
        assert mask.shape == (5, 16, 16) and mask.dtype == torch.bool
        assert trigger_focus(torch.rand(5, 3, 16, 16), mask).shape == (5,)
        assert trigger_focus(torch.rand(5, 1, 16, 16), mask[0]).shape == (5,)

    def test_explanation_shapes(self):
        shape = (3, 16, 16)
        x = images(shape, n=4)
        ex = explain((small_cnn(shape), small_cnn(shape)), x, "grad_cam")
        for maps, pred, conf, target in zip(ex.maps, ex.pred, ex.conf, ex.target, strict=True):
            assert maps.shape == (4, 16, 16) and maps.min() >= 0 and maps.max() <= 1
            assert pred.shape == conf.shape == target.shape == (4,)
            assert pred.dtype == torch.long and ((conf > 0) & (conf <= 1)).all()
        assert ex.scale.shape == (4,)

    def test_predict_proba(self):
        p = predict_proba(small_cnn(), images(n=5), batch_size=2)
        assert p.shape == (5, K)
        torch.testing.assert_close(p.sum(1), torch.ones(5))
        assert predict_proba(small_cnn(), images(n=0)).shape == (0, K)


# --------------------------------------------------------------------------------------- feature
class TestFeature:
    def test_saliency_of_a_linear_model_is_abs_weight(self):
        model, x = random_linear(), images()
        weight = model.net[1].weight.detach()  # (K, C*H*W)
        attr = attribute(model, x, 3, "saliency")
        expected = weight[3].abs().view(1, 8, 8).expand(4, 1, 8, 8)
        torch.testing.assert_close(attr, expected)
        targets = torch.tensor([0, 5, 9, 2])
        attr = attribute(model, x, targets, "saliency")
        torch.testing.assert_close(attr, weight[targets].abs().view(4, 1, 8, 8))
        signed = attribute(model, x, 3, "saliency", abs=False)
        torch.testing.assert_close(signed, weight[3].view(1, 1, 8, 8).expand(4, 1, 8, 8))

    def test_input_x_gradient_of_a_linear_model(self):
        model, x = random_linear(), images()
        weight = model.net[1].weight.detach()
        torch.testing.assert_close(
            attribute(model, x, 7, "input_x_gradient"), x * weight[7].view(1, 1, 8, 8)
        )

    @pytest.mark.parametrize("baseline", [0.0, 0.5])
    def test_integrated_gradients_completeness_on_a_linear_model(self, baseline):
        model, x = random_linear(), images()
        attr = attribute(model, x, 4, "integrated_gradients", n_steps=5, baseline=baseline)
        with torch.no_grad():
            gap = model(x)[:, 4] - model(torch.full_like(x, baseline))[:, 4]
        torch.testing.assert_close(attr.flatten(1).sum(1), gap, rtol=1e-4, atol=1e-4)
        weight = model.net[1].weight.detach()[4].view(1, 1, 8, 8)
        torch.testing.assert_close(attr, (x - baseline) * weight, rtol=1e-4, atol=1e-5)

    def test_integrated_gradients_completeness_on_a_cnn(self):
        shape = (1, 16, 16)
        model, x = small_cnn(shape), images(shape)
        attr = attribute(model, x, 3, "integrated_gradients", n_steps=64)
        with torch.no_grad():
            gap = model(x)[:, 3] - model(torch.zeros_like(x))[:, 3]
        torch.testing.assert_close(attr.flatten(1).sum(1), gap, rtol=0.05, atol=3e-4)

    def test_occlusion_of_a_linear_model(self):
        # occluding a window with 0 drops the score by sum(W * x) over the window; a 1x1 window
        # with stride 1 gives exactly x * W[target]
        model, x = random_linear(), images()
        weight = model.net[1].weight.detach()[2].view(1, 1, 8, 8)
        attr = attribute(model, x, 2, "occlusion", window=1, stride=1)
        torch.testing.assert_close(attr, x * weight, rtol=1e-4, atol=1e-5)

    def test_grad_cam_is_non_negative_and_upsampled(self):
        shape = (1, 16, 16)
        cam = attribute(small_cnn(shape), images(shape), 1, "grad_cam", upsample="nearest")
        assert cam.min() >= 0
        # small_cnn's last block is 4x4 at 16 px: nearest upsampling repeats 4x4 blocks
        torch.testing.assert_close(
            cam, cam[:, :, ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3)
        )

    def test_default_target_is_the_prediction(self):
        model, x = small_cnn(), images(n=6)
        with torch.no_grad():
            pred = model(x).argmax(1)
        torch.testing.assert_close(attribute(model, x, None, "saliency"), attribute(model, x, pred))

    def test_heat_maps_share_one_scale_across_models(self):
        shape = (1, 8, 8)
        h0 = random_linear(shape)
        h = linear_model(2 * h0.net[1].weight.detach(), shape)  # the same model, weights doubled
        x = images(shape)
        a0, a = attribute(h0, x, 3, "saliency"), attribute(h, x, 3, "saliency")
        m0, m = heatmaps(a0, a, percentile=100)
        assert m0.shape == m.shape == (4, 8, 8)
        torch.testing.assert_close(m, 2 * m0)  # the ratio survives the shared normalisation
        torch.testing.assert_close(m.flatten(1).amax(1), torch.ones(4))
        # normalising each model on its own would have hidden the difference
        own0, own = heatmaps(a0, percentile=100)[0], heatmaps(a, percentile=100)[0]
        torch.testing.assert_close(own0, own)
        # with outlier clipping the ratio holds wherever the brighter map is not clipped
        c0, c = heatmaps(a0, a)
        kept = c < 1
        torch.testing.assert_close(c[kept], 2 * c0[kept])
        # one scale for the whole set as well
        g0, g = heatmaps(a0, a, percentile=100, per_image=False)
        torch.testing.assert_close(g, 2 * g0)
        assert float(g.max()) == 1.0 and float(g.flatten(1).amax(1).min()) <= 1.0

    def test_heat_map_scale_edge_cases(self):
        zero = torch.zeros(2, 1, 8, 8)
        for m in heatmaps(zero, zero):
            assert (m == 0).all()
        sparse = torch.zeros(1, 1, 8, 8)
        sparse[0, 0, 0, 0] = 5.0  # 99th percentile is 0: the max is used
        (m,) = heatmaps(sparse)
        assert float(m[0, 0, 0]) == 1.0 and float(m.sum()) == 1.0
        signed = torch.randn(2, 3, 8, 8)
        torch.testing.assert_close(heatmaps(signed)[0], heatmaps(signed.abs())[0])

    def test_trigger_mask_is_the_changed_pixels(self):
        x = images((3, 8, 8), n=3)
        x[1, :, 7, 7] = 1.0  # already white: the white patch does not change it
        mask = trigger_mask(create_trigger("badnets", make_info((3, 8, 8))), x)
        expected = patch_mask((3, 8, 8)).expand(3, 8, 8).clone()
        expected[1, 7, 7] = False
        assert torch.equal(mask, expected)
        blended = trigger_mask(create_trigger("blended", make_info((1, 8, 8))), images())
        assert blended.float().mean() > 0.9

    def test_trigger_focus_numbers(self):
        mask = patch_mask().expand(2, 8, 8)
        inside = torch.zeros(2, 1, 8, 8)
        inside[:, :, -3:, -3:] = torch.rand(2, 1, 3, 3) + 0.1
        torch.testing.assert_close(trigger_focus(inside, mask), torch.ones(2))
        torch.testing.assert_close(
            trigger_focus(torch.ones(2, 3, 8, 8), mask), torch.full((2,), 9 / 64)
        )
        focus = trigger_focus(torch.zeros(2, 1, 8, 8), mask)
        assert focus.isnan().all()  # an all-zero map says nothing
        empty = torch.zeros(2, 8, 8, dtype=torch.bool)
        assert trigger_focus(torch.ones(2, 1, 8, 8), empty).isnan().all()

    @pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
    def test_focus_is_one_for_a_model_that_only_looks_at_the_trigger(self, method):
        model, x = region_linear(patch_mask()), images(n=6)
        stats = focus_stats(model, x, badnets(), method, params={method: TINY.get(method, {})})
        s = stats[method]
        assert isinstance(s, FocusStats) and s.method == method and s.n == 6
        assert s.mean == pytest.approx(1.0) and s.std == pytest.approx(0.0, abs=1e-6)
        assert s.area == pytest.approx(9 / 64)

    def test_focus_is_the_area_share_for_a_uniform_map(self):
        model = linear_model(torch.ones(K, 64))
        s = focus_stats(model, images(n=5), badnets(), "saliency")["saliency"]
        assert s.mean == pytest.approx(9 / 64) and s.mean == pytest.approx(s.area)
        assert s.std == pytest.approx(0.0, abs=1e-6) and s.n == 5

    def test_compare_focus_before_and_after(self):
        h0, h = region_linear(patch_mask()), linear_model(torch.ones(K, 64))
        result = compare_focus(h0, h, images(n=4), badnets(), ["saliency", "input_x_gradient"])
        assert list(result) == ["saliency", "input_x_gradient"]
        sal = result["saliency"]
        assert isinstance(sal, FocusComparison)
        assert sal.before.mean == pytest.approx(1.0) and sal.after.mean == pytest.approx(9 / 64)
        assert sal.change == pytest.approx(9 / 64 - 1.0)
        d = sal.to_dict()
        assert d["before"]["n"] == 4 and d["change"] == pytest.approx(sal.change)

    def test_focus_stats_of_every_method_on_a_cnn(self):
        shape = (1, 16, 16)
        stats = focus_stats(small_cnn(shape), images(shape, n=3), badnets(shape), params=TINY)
        assert list(stats) == METHOD_NAMES
        for s in stats.values():
            assert 0.0 <= s.mean <= 1.0 and s.std >= 0.0 and s.n == 3

    @pytest.mark.parametrize("method", METHOD_NAMES)
    def test_batch_size_invariance(self, method):
        shape = (1, 16, 16)
        model, x = small_cnn(shape), images(shape, n=5)
        params = TINY.get(method, {})
        whole = attribute(model, x, 1, method, batch_size=64, **params)
        for batch_size in (1, 2):
            part = attribute(model, x, 1, method, batch_size=batch_size, **params)
            torch.testing.assert_close(part, whole, rtol=1e-4, atol=1e-6)

    @pytest.mark.parametrize("method", METHOD_NAMES)
    def test_inputs_are_left_untouched(self, method):
        x = images()
        before = x.clone()
        target = torch.tensor([1, 2, 3, 4])
        attribute(small_cnn(), x, target, method, **TINY.get(method, {}))
        assert torch.equal(x, before) and not x.requires_grad and x.grad is None
        assert torch.equal(target, torch.tensor([1, 2, 3, 4]))

    @pytest.mark.parametrize("method", METHOD_NAMES)
    def test_model_is_left_untouched(self, method):
        model = create_model("small_cnn", make_info(), seed=0)  # training mode, BN would update
        model.net.head.eval()  # a mixed state must come back as it was
        for p in model.net.head.parameters():
            p.requires_grad_(False)
        modes = [m.training for m in model.modules()]
        flags = [p.requires_grad for p in model.parameters()]
        state = {k: v.clone() for k, v in model.state_dict().items()}
        attribute(model, images(), 0, method, **TINY.get(method, {}))
        assert [m.training for m in model.modules()] == modes
        assert [p.requires_grad for p in model.parameters()] == flags
        assert all(p.grad is None for p in model.parameters())
        for k, v in model.state_dict().items():  # weights and BatchNorm running statistics
            assert torch.equal(v, state[k]), k

    @pytest.mark.parametrize("method", METHOD_NAMES)
    def test_frozen_model(self, method):
        # SAU's h0 has no parameter that requires grad; every method still works on it
        model = create_model("small_cnn", make_info(), seed=0).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        attr = attribute(model, images(), 0, method, **TINY.get(method, {}))
        assert torch.isfinite(attr).all() and attr.abs().sum() > 0

    def test_explain_maps_are_the_shared_heat_maps(self):
        shape = (1, 8, 8)
        h0 = random_linear(shape)
        h = linear_model(2 * h0.net[1].weight.detach(), shape)
        x = images(shape)
        ex = explain((h0, h), x, "saliency", target=3, percentile=100)
        torch.testing.assert_close(ex.maps[1], 2 * ex.maps[0])
        assert all(torch.equal(t, torch.full((4,), 3)) for t in ex.target)
        own = explain((h0, h), x, "saliency")
        assert torch.equal(own.target[0], own.pred[0]) and torch.equal(own.target[1], own.pred[1])

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
    @pytest.mark.parametrize("method", METHOD_NAMES)
    def test_device_follows_the_model(self, method):
        shape = (1, 16, 16)
        cpu = small_cnn(shape)
        gpu = create_model("small_cnn", make_info(shape), seed=0).eval().cuda()
        x = images(shape)
        params = TINY.get(method, {})
        on_gpu = attribute(gpu, x, 2, method, **params)
        assert on_gpu.device == x.device  # results come back to the images' device
        torch.testing.assert_close(
            on_gpu, attribute(cpu, x, 2, method, **params), rtol=1e-3, atol=1e-5
        )
        assert attribute(gpu, x.cuda(), 2, method, **params).is_cuda
