"""Tests of sau_core.attacks: smoke, exceptions, cardinality and features of every attack.

Tests parametrised over ``list_attacks()`` cover a newly registered attack automatically.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing

import pytest
import torch
from PIL import Image

from sau_core.attacks import (
    ATTACKS,
    DEFAULT_BLENDED_TRIGGER,
    AttackSpec,
    BackdoorTest,
    PoisonedTrain,
    Trigger,
    backdoor_test,
    create_trigger,
    example_params,
    list_attacks,
    make_config,
    param_schema,
    poison_indices,
    poison_train,
    target_labels,
)
from sau_core.data import DatasetInfo, ImageData

ATTACK_NAMES = list_attacks()
GEOMETRIES = [(1, 8, 8), (1, 16, 16), (3, 32, 32)]
GEOMETRY_IDS = ["1x8x8", "1x16x16", "3x32x32"]
K = 10


def make_info(shape=(1, 8, 8), num_classes=K) -> DatasetInfo:
    c = shape[0]
    return DatasetInfo("fake", num_classes, tuple(shape), (0.5,) * c, (0.25,) * c, natural=False)


def make_data(shape=(1, 8, 8), n=200, seed=0, num_classes=K) -> ImageData:
    """Random images in [0, 1], labels cycling 0..K-1 (so each class has n / K images)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    y = torch.arange(n, dtype=torch.long) % num_classes
    return ImageData(x, y, make_info(shape, num_classes))


def spec_for(name: str, **kwargs) -> AttackSpec:
    params = {**example_params(name), **kwargs.pop("params", {})}
    return AttackSpec(name=name, params=params, **kwargs)


def trigger_of(name: str, info: DatasetInfo, params: dict | None = None):
    """``create_trigger`` with the attack's working example parameters (the custom trigger
    needs an image) under ``params``."""
    return create_trigger(name, info, {**example_params(name), **(params or {})})


WITHOUT_CROSS = [n for n in ATTACK_NAMES if not trigger_of(n, make_info()).has_cross]
RULE_CASES = [  # clean-label attacks support all2one only
    (n, r)
    for n in ATTACK_NAMES
    for r in ("all2one", "all2all")
    if r == "all2one" or not ATTACKS[n].clean_label
]


@pytest.fixture(params=GEOMETRIES, ids=GEOMETRY_IDS)
def shape(request):
    return request.param


# ---------------------------------------------------------------------------------------- smoke
class TestSmoke:
    def test_registry(self):
        assert {"badnets", "blended", "sig", "wanet"} <= set(ATTACKS)
        assert sorted(ATTACKS) == ATTACK_NAMES

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_config_is_frozen_dataclass_with_form_metadata(self, name):
        cls = ATTACKS[name].config
        assert dataclasses.is_dataclass(cls)
        cfg = cls()
        field_names = [f.name for f in dataclasses.fields(cls)]
        assert field_names
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cfg, field_names[0], getattr(cfg, field_names[0]))
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{name}.{f.name} has no help text"
            assert hints[f.name] in (int, float, str, bool)
            if "choices" in f.metadata:
                assert f.default in f.metadata["choices"]

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_param_schema(self, name, shape):
        schema = param_schema(name, make_info(shape))
        assert [s["name"] for s in schema] == [
            f.name for f in dataclasses.fields(ATTACKS[name].config)
        ]
        for s in schema:
            assert s["help"] and s["type"] in ("int", "float", "str", "bool")
            if "min" in s:
                assert s["default"] >= s["min"]
            if "max" in s:
                assert s["default"] <= s["max"]
        json.dumps(schema)  # forms can ship it as JSON

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_trigger_basics(self, name):
        trigger = trigger_of(name, make_info())
        assert isinstance(trigger, Trigger)
        assert trigger.name == name
        assert trigger.clean_label == ATTACKS[name].clean_label
        assert type(trigger).__name__ in repr(trigger)

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_shape_dtype_range(self, name, shape):
        trigger = trigger_of(name, make_info(shape))
        x = make_data(shape, n=16).x
        out = trigger(x)
        assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert not torch.equal(out, x)

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_extreme_images_stay_in_range(self, name, shape):
        trigger = trigger_of(name, make_info(shape))
        for value in (0.0, 1.0):
            out = trigger(torch.full((2, *shape), value))
            assert out.min() >= 0.0 and out.max() <= 1.0

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_float64_kept(self, name):
        trigger = trigger_of(name, make_info())
        x = make_data(n=4).x.double()
        out = trigger(x)
        assert out.dtype == torch.float64
        assert torch.allclose(out.float(), trigger(x.float()), atol=1e-5)

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_empty_batch(self, name):
        trigger = trigger_of(name, make_info())
        out = trigger(torch.zeros(0, 1, 8, 8))
        assert out.shape == (0, 1, 8, 8)

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_input_not_modified_in_place(self, name, shape):
        trigger = trigger_of(name, make_info(shape))
        x = make_data(shape, n=8).x
        before = x.clone()
        out = trigger(x)
        assert torch.equal(x, before)
        assert out.data_ptr() != x.data_ptr()
        if trigger.has_cross:
            trigger.cross(x, torch.Generator().manual_seed(0))
            assert torch.equal(x, before)

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_batch_independent(self, name):
        """A batched call equals per-image calls (the trigger is a per-image function)."""
        trigger = trigger_of(name, make_info())
        x = make_data(n=6).x
        single = torch.cat([trigger(x[i : i + 1]) for i in range(len(x))])
        assert torch.allclose(trigger(x), single, atol=1e-6)

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_device_agnostic(self, name):
        trigger = trigger_of(name, make_info())
        x = make_data(n=8).x
        out = trigger(x.cuda())
        assert out.device.type == "cuda"
        assert torch.allclose(out.cpu(), trigger(x), atol=1e-5)
        data = make_data(n=100)
        spec = spec_for(name)
        on_gpu = poison_train(data.to("cuda"), spec)
        on_cpu = poison_train(data, spec)
        assert torch.equal(on_gpu.poison_idx, on_cpu.poison_idx)
        assert torch.allclose(on_gpu.data.x.cpu(), on_cpu.data.x, atol=1e-5)


# ----------------------------------------------------------------------------------- exceptions
BAD_PARAMS = [
    ("badnets", {"size": 0}),
    ("badnets", {"size": 9}),  # larger than the 8x8 image
    ("badnets", {"size": 2.5}),
    ("badnets", {"size": "3"}),
    ("badnets", {"size": True}),
    ("badnets", {"location": "middle"}),
    ("badnets", {"pattern": "red"}),
    ("blended", {"alpha": 0.0}),
    ("blended", {"alpha": 1.5}),
    ("blended", {"alpha": -0.1}),
    ("blended", {"alpha": float("nan")}),
    ("blended", {"image": 3}),
    ("sig", {"delta": 0.0}),
    ("sig", {"delta": -0.1}),
    ("sig", {"freq": 0}),
    ("sig", {"freq": 9}),  # more periods than columns
    ("sig", {"freq": 4}),  # 2 f / W integer: only the sinusoid's zeros are sampled
    ("wanet", {"k": 1}),
    ("wanet", {"k": 9}),
    ("wanet", {"s": -0.5}),
    ("wanet", {"s": float("inf")}),
    ("wanet", {"grid_rescale": 0.0}),
    ("wanet", {"cross_ratio": -1.0}),
    ("wanet", {"seed": -1}),
]


class TestExceptions:
    @pytest.mark.parametrize(("name", "params"), BAD_PARAMS, ids=lambda v: str(v))
    def test_bad_params(self, name, params):
        with pytest.raises(ValueError, match=name):
            trigger_of(name, make_info((1, 8, 8)), params)
        with pytest.raises(ValueError):
            AttackSpec(name, params).validate(make_info((1, 8, 8)))

    def test_unknown_attack(self):
        with pytest.raises(ValueError, match="unknown attack"):
            create_trigger("nope", make_info())
        with pytest.raises(ValueError, match="unknown attack"):
            AttackSpec("nope").validate(make_info())

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_unknown_param_name(self, name):
        with pytest.raises(ValueError, match="unknown parameter.*'bogus'"):
            create_trigger(name, make_info(), {"bogus": 1})

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_params_not_a_dict(self, name):
        with pytest.raises(ValueError):
            create_trigger(name, make_info(), [("a", 1)])
        other = next(n for n in ATTACK_NAMES if ATTACKS[n].config is not ATTACKS[name].config)
        with pytest.raises(ValueError):
            create_trigger(name, make_info(), ATTACKS[other].config())

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_config_constructor_validates(self, name):
        cls = ATTACKS[name].config
        f = dataclasses.fields(cls)[0]
        with pytest.raises(ValueError):
            cls(**{f.name: object()})

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_wrong_input_shape_or_dtype(self, name):
        trigger = trigger_of(name, make_info((1, 8, 8)))
        with pytest.raises(ValueError, match="shape"):
            trigger(torch.rand(2, 3, 8, 8))
        with pytest.raises(ValueError, match="shape"):
            trigger(torch.rand(1, 8, 8))
        with pytest.raises(ValueError, match="float"):
            trigger(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))

    @pytest.mark.parametrize("name", WITHOUT_CROSS)
    def test_cross_not_implemented(self, name):
        trigger = trigger_of(name, make_info())
        with pytest.raises(NotImplementedError):
            trigger.cross(torch.rand(2, 1, 8, 8), torch.Generator())

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"target": K},
            {"target": -1},
            {"target": 1.0},
            {"target": True},
            {"poison_ratio": 0.0},
            {"poison_ratio": 1.5},
            {"poison_ratio": float("nan")},
            {"label_rule": "one2one"},
            {"seed": -3},
        ],
        ids=lambda v: str(v),
    )
    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_bad_spec(self, name, kwargs):
        spec = AttackSpec(name, example_params(name), **kwargs)
        with pytest.raises(ValueError):
            spec.validate(make_info())
        with pytest.raises(ValueError):
            poison_train(make_data(), spec)
        with pytest.raises(ValueError):
            backdoor_test(make_data(), spec)

    @pytest.mark.parametrize("name", [n for n in ATTACK_NAMES if ATTACKS[n].clean_label])
    def test_clean_label_needs_all2one(self, name):
        with pytest.raises(ValueError, match="clean-label"):
            AttackSpec(name, label_rule="all2all").validate(make_info())

    def test_no_candidates(self):
        data = make_data(n=20)
        only_target = ImageData(data.x, torch.zeros(20, dtype=torch.long), data.info)
        with pytest.raises(ValueError, match="no training images"):
            poison_indices(only_target, spec_for("badnets", target=0))
        no_target = ImageData(data.x, torch.ones(20, dtype=torch.long), data.info)
        with pytest.raises(ValueError, match="no training images"):
            poison_indices(no_target, spec_for("sig", target=0))

    @pytest.mark.parametrize(
        "d",
        [
            {"name": "badnets", "colour": "red"},
            {"target": "0"},
            {"target": 0.0},
            {"poison_ratio": "0.1"},
            {"poison_ratio": True},
            {"params": [1, 2]},
            {"seed": None},
            ["badnets"],
        ],
        ids=lambda v: str(v),
    )
    def test_from_dict_rejects(self, d):
        with pytest.raises(ValueError):
            AttackSpec.from_dict(d)


# ---------------------------------------------------------------------------------- cardinality
class TestCardinality:
    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_indices_deterministic_per_seed(self, name):
        data = make_data(n=300)
        a = poison_indices(data, spec_for(name, seed=7, poison_ratio=0.05))
        b = poison_indices(data, spec_for(name, seed=7, poison_ratio=0.05))
        c = poison_indices(data, spec_for(name, seed=8, poison_ratio=0.05))
        assert a.dtype == torch.int64
        assert torch.equal(a, b)
        assert not torch.equal(a, c)
        assert torch.equal(a, a.sort().values) and len(a.unique()) == len(a)
        assert torch.equal(
            poison_train(data, spec_for(name, seed=7, poison_ratio=0.05)).poison_idx, a
        )

    @pytest.mark.parametrize("ratio", [0.01, 0.05, 0.1, 0.5])
    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_poison_count(self, name, ratio):
        n = 200
        data = make_data(n=n)
        spec = spec_for(name, poison_ratio=ratio, target=2)
        idx = poison_indices(data, spec)
        expected = round(ratio * n)
        if ATTACKS[name].clean_label:
            n_target = int((data.y == 2).sum())
            assert len(idx) == min(expected, n_target)
            assert (data.y[idx] == 2).all()
        else:
            assert len(idx) == expected
            assert (data.y[idx] != 2).all()  # all2one: drawn among non-target images

    @pytest.mark.parametrize("name", [n for n in ATTACK_NAMES if not ATTACKS[n].clean_label])
    def test_all2all_draws_from_every_class(self, name):
        data = make_data(n=200)
        idx = poison_indices(data, spec_for(name, label_rule="all2all", poison_ratio=0.5))
        assert len(idx) == 100
        assert set(data.y[idx].tolist()) == set(range(K))

    def test_tiny_ratio_poisons_at_least_one(self):
        assert len(poison_indices(make_data(n=20), spec_for("badnets", poison_ratio=0.001))) == 1

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_cross_indices(self, name):
        data = make_data(n=200)
        result = poison_train(data, spec_for(name, poison_ratio=0.1))
        assert isinstance(result, PoisonedTrain)
        trigger = trigger_of(name, data.info)
        if trigger.has_cross:
            assert len(result.cross_idx) == round(trigger.cross_ratio * len(result.poison_idx))
            assert not set(result.cross_idx.tolist()) & set(result.poison_idx.tolist())
            assert torch.equal(result.cross_idx, result.cross_idx.sort().values)
        else:
            assert len(result.cross_idx) == 0
        assert result.cross_idx.dtype == torch.int64

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_backdoor_test_sizes(self, name):
        test = make_data(n=100, seed=3)
        bt = backdoor_test(test, spec_for(name, target=4))
        assert isinstance(bt, BackdoorTest)
        assert len(bt) == len(bt.x) == len(bt.target) == len(bt.index) == 90
        if not ATTACKS[name].clean_label:
            assert len(backdoor_test(test, spec_for(name, label_rule="all2all"))) == 100


# -------------------------------------------------------------------------------------- feature
class TestFeature:
    @pytest.mark.parametrize(("name", "rule"), RULE_CASES)
    def test_labels_by_rule(self, name, rule):
        data = make_data(n=200)
        result = poison_train(data, spec_for(name, target=5, label_rule=rule, poison_ratio=0.2))
        idx = result.poison_idx
        got = result.data.y[idx]
        if ATTACKS[name].clean_label:
            assert torch.equal(got, data.y[idx])
            assert (got == 5).all()
        elif rule == "all2one":
            assert (got == 5).all()
        else:
            assert torch.equal(got, (data.y[idx] + 1) % K)
        assert torch.equal(result.data.y[result.cross_idx], data.y[result.cross_idx])

    def test_target_labels(self):
        y = torch.tensor([0, 3, 9, 5])
        assert target_labels(y, AttackSpec(target=5), K).tolist() == [5, 5, 5, 5]
        rule = AttackSpec(label_rule="all2all")
        assert target_labels(y, rule, K).tolist() == [1, 4, 0, 6]
        with pytest.raises(ValueError):
            target_labels(y, AttackSpec(label_rule="bogus"), K)

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_only_selected_images_change(self, name, shape):
        data = make_data(shape, n=120)
        before_x, before_y = data.x.clone(), data.y.clone()
        result = poison_train(data, spec_for(name, poison_ratio=0.1), batch_size=5)
        assert torch.equal(data.x, before_x) and torch.equal(data.y, before_y)  # train untouched
        touched = torch.zeros(len(data), dtype=torch.bool)
        touched[result.poison_idx] = True
        touched[result.cross_idx] = True
        assert torch.equal(result.data.x[~touched], data.x[~touched])
        assert torch.equal(result.data.y[~touched], data.y[~touched])
        trigger, idx = trigger_of(name, data.info), result.poison_idx
        # the trigger itself for every attack but LC, whose poison is hardened first (own test)
        expected = trigger.poison(data.x[idx], data.y[idx], data, 0)
        assert torch.equal(result.data.x[idx], expected)
        if name != "lc":
            assert torch.equal(expected, trigger(data.x[idx]))

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_poison_train_deterministic(self, name):
        data = make_data(n=100)
        a = poison_train(data, spec_for(name, seed=3))
        b = poison_train(data, spec_for(name, seed=3), batch_size=7)
        assert torch.equal(a.data.x, b.data.x) and torch.equal(a.data.y, b.data.y)
        assert torch.equal(a.cross_idx, b.cross_idx)

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_backdoor_test_contents(self, name):
        test = make_data(n=100, seed=3)
        before = test.x.clone()
        bt = backdoor_test(test, spec_for(name, target=4))
        assert (test.y[bt.index] != 4).all() and (bt.y != 4).all()
        assert torch.equal(bt.y, test.y[bt.index])  # true labels, for RA
        assert (bt.target == 4).all()  # attack labels, for ASR
        assert torch.equal(bt.x, trigger_of(name, test.info)(test.x[bt.index]))
        assert torch.equal(test.x, before)
        if not ATTACKS[name].clean_label:
            bt2 = backdoor_test(test, spec_for(name, label_rule="all2all"))
            assert torch.equal(bt2.index, torch.arange(100))
            assert torch.equal(bt2.target, (test.y + 1) % K)
            assert torch.equal(bt2.y, test.y)

    @pytest.mark.parametrize("name", ATTACK_NAMES)
    def test_spec_json_round_trip(self, name):
        spec = AttackSpec(name, {}, target=3, label_rule="all2one", poison_ratio=0.25, seed=11)
        params = {f.name: f.default for f in dataclasses.fields(ATTACKS[name].config)}
        for s in (spec, dataclasses.replace(spec, params=params)):
            back = AttackSpec.from_dict(json.loads(json.dumps(s.to_dict())))
            assert back == s
            assert hash(back) == hash(s)
        assert AttackSpec.from_dict({}) == AttackSpec()
        assert AttackSpec.from_dict({"poison_ratio": 1}).poison_ratio == 1.0

    def test_spec_params_copied_and_config_accepted(self):
        params = {"size": 4}
        spec = AttackSpec("badnets", params)
        params["size"] = 5
        assert spec.params == {"size": 4}
        from_config = AttackSpec("badnets", make_config("badnets", {"size": 4}))
        assert from_config.params == {"size": 4, "location": "bottom-right", "pattern": "white"}
        json.dumps(from_config.to_dict())

    def test_create_trigger_accepts_config_and_json_numbers(self):
        info = make_info()
        cfg = make_config("blended", {"alpha": 1})  # a JSON int for a float field
        assert cfg.alpha == 1.0 and isinstance(cfg.alpha, float)
        assert create_trigger("blended", info, cfg).config is cfg
        assert create_trigger("badnets", info, {"size": 3.0}).config.size == 3

    # --- BadNets
    def test_badnets_white_patch_bottom_right(self):
        trigger = create_trigger("badnets", make_info((1, 8, 8)))
        out = trigger(torch.zeros(2, 1, 8, 8))
        expected = torch.zeros(2, 1, 8, 8)
        expected[:, :, 5:8, 5:8] = 1.0
        assert torch.equal(out, expected)
        x = make_data((3, 32, 32), n=4).x
        out = create_trigger("badnets", make_info((3, 32, 32)))(x)
        assert (out[:, :, 29:, 29:] == 1).all()
        mask = torch.ones(32, 32, dtype=torch.bool)
        mask[29:, 29:] = False
        assert torch.equal(out[:, :, mask], x[:, :, mask])

    @pytest.mark.parametrize(
        ("location", "rows", "cols"),
        [
            ("bottom-right", slice(6, 8), slice(6, 8)),
            ("bottom-left", slice(6, 8), slice(0, 2)),
            ("top-right", slice(0, 2), slice(6, 8)),
            ("top-left", slice(0, 2), slice(0, 2)),
            ("center", slice(3, 5), slice(3, 5)),
        ],
    )
    def test_badnets_locations(self, location, rows, cols):
        trigger = create_trigger("badnets", make_info(), {"size": 2, "location": location})
        out = trigger(torch.full((1, 1, 8, 8), 0.5))
        expected = torch.full((1, 1, 8, 8), 0.5)
        expected[:, :, rows, cols] = 1.0
        assert torch.equal(out, expected)
        assert torch.equal(trigger.mask, expected[0, 0] == 1.0)

    def test_badnets_patterns(self):
        info = make_info()
        black = create_trigger("badnets", info, {"pattern": "black"})(torch.ones(1, 1, 8, 8))
        assert (black[0, 0, 5:, 5:] == 0).all() and black.sum() == 64 - 9
        checker = create_trigger("badnets", info, {"pattern": "checker"})(
            torch.full((1, 1, 8, 8), 0.5)
        )
        assert checker[0, 0, 5:, 5:].tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
        full = create_trigger("badnets", info, {"size": 8})(torch.zeros(1, 1, 8, 8))
        assert (full == 1).all()

    # --- Blended
    def test_blended_alpha_one_gives_trigger_image(self, shape):
        trigger = create_trigger("blended", make_info(shape), {"alpha": 1.0})
        out = trigger(make_data(shape, n=3).x)
        assert trigger.pattern.shape == shape
        assert torch.equal(out, trigger.pattern.expand_as(out))

    def test_blended_formula_on_constant_image(self):
        trigger = create_trigger("blended", make_info((3, 32, 32)), {"alpha": 0.3})
        out = trigger(torch.full((2, 3, 32, 32), 0.6))
        assert torch.allclose(out, 0.7 * 0.6 + 0.3 * trigger.pattern.expand_as(out), atol=1e-6)

    def test_blended_default_is_shipped_asset(self):
        assert DEFAULT_BLENDED_TRIGGER.is_file()
        with Image.open(DEFAULT_BLENDED_TRIGGER) as img:
            assert img.size == (32, 32) and img.mode == "RGB"
        pattern = create_trigger("blended", make_info((3, 32, 32))).pattern
        assert pattern.std() > 0.1  # a real pattern, not a flat image
        assert pattern.amin(dim=(1, 2)).max() < 0.1 and pattern.amax(dim=(1, 2)).min() > 0.9

    def test_blended_user_image(self, tmp_path):
        path = tmp_path / "key.png"
        Image.new("RGB", (10, 6), (255, 0, 0)).save(path)
        rgb = create_trigger("blended", make_info((3, 32, 32)), {"alpha": 1.0, "image": str(path)})
        assert torch.allclose(rgb.pattern[0], torch.ones(32, 32))
        assert torch.allclose(rgb.pattern[1:], torch.zeros(2, 32, 32))
        grey = create_trigger("blended", make_info((1, 8, 8)), {"image": str(path)})
        assert grey.pattern.shape == (1, 8, 8)
        assert torch.allclose(grey.pattern, torch.full((1, 8, 8), 76 / 255))  # ITU-R 601 luma

    def test_blended_user_image_gradient_resized(self, tmp_path):
        path = tmp_path / "ramp.png"
        ramp = Image.fromarray(
            (torch.arange(64).repeat(64, 1) * 4).to(torch.uint8).numpy(), mode="L"
        )  # brighter to the right
        ramp.save(path)
        pattern = create_trigger("blended", make_info((1, 16, 16)), {"image": str(path)}).pattern
        assert (pattern[0, :, 1:] > pattern[0, :, :-1]).all()

    def test_blended_missing_or_invalid_image(self, tmp_path):
        info = make_info()
        with pytest.raises(ValueError, match="not found"):
            create_trigger("blended", info, {"image": str(tmp_path / "absent.png")})
        with pytest.raises(ValueError, match="not found"):
            create_trigger("blended", info, {"image": str(tmp_path)})  # a folder
        text = tmp_path / "notes.png"
        text.write_text("this is not an image")
        with pytest.raises(ValueError, match="cannot read|not an image"):
            create_trigger("blended", info, {"image": str(text)})
        with pytest.raises(ValueError):
            AttackSpec("blended", {"image": str(text)}).validate(info)

    # --- SIG
    def test_sig_formula_on_zero_image(self, shape):
        c, h, w = shape
        delta, freq = 0.2, 3
        trigger = create_trigger("sig", make_info(shape), {"delta": delta, "freq": freq})
        out = trigger(torch.zeros(2, *shape))
        j = torch.arange(w, dtype=torch.float64)
        signal = (delta * torch.sin(2 * math.pi * j * freq / w)).float()
        assert torch.allclose(out, signal.clamp(min=0).expand(2, c, h, w), atol=1e-6)
        mid = trigger(torch.full((1, *shape), 0.5))
        assert torch.allclose(mid, (0.5 + signal).expand(1, c, h, w), atol=1e-6)

    def test_sig_default_amplitude(self):
        out = create_trigger("sig", make_info((1, 16, 16)))(torch.full((1, 1, 16, 16), 0.5))
        assert math.isclose(float((out - 0.5).abs().max()), 40 / 255, rel_tol=1e-3)
        assert torch.equal(out[0, 0, 0], out[0, 0, 7])  # constant down each column

    # --- WaNet
    def test_wanet_zero_strength_is_identity(self, shape):
        trigger = create_trigger("wanet", make_info(shape), {"s": 0.0})
        x = make_data(shape, n=4).x
        assert torch.allclose(trigger(x), x, atol=1e-5)

    def test_wanet_field_deterministic(self):
        info = make_info((3, 32, 32))
        a = create_trigger("wanet", info, {"seed": 5})
        b = create_trigger("wanet", info, {"seed": 5})
        c = create_trigger("wanet", info, {"seed": 6})
        assert torch.equal(a.grid, b.grid)
        assert not torch.allclose(a.grid, c.grid)
        x = make_data((3, 32, 32), n=4).x
        assert torch.equal(a(x), b(x))
        assert not torch.allclose(a(x), c(x))

    def test_wanet_field_normalised(self):
        trigger = create_trigger("wanet", make_info((3, 32, 32)))
        assert trigger.grid.shape == (1, 32, 32, 2)
        assert trigger.grid.abs().max() <= 1.0
        # the k x k control field has mean |.| 1; after bicubic upsampling it stays close
        assert 0.5 < float(trigger.field.abs().mean()) < 1.5

    def test_wanet_warp_is_small(self, shape):
        """Default s = 0.5 moves pixels by less than one pixel: an invisible warp."""
        _, h, w = shape
        warp = create_trigger("wanet", make_info(shape))
        ident = create_trigger("wanet", make_info(shape), {"s": 0.0})
        shift = (warp.grid - ident.grid) * torch.tensor([(w - 1) / 2, (h - 1) / 2])
        assert 0.05 < float(shift.abs().max()) < 1.0

    def test_wanet_cross_samples(self):
        data = make_data((3, 32, 32), n=200)
        result = poison_train(data, spec_for("wanet", poison_ratio=0.1, target=1))
        trigger = create_trigger("wanet", data.info)
        cross = result.cross_idx
        assert len(cross) == 40
        assert torch.equal(result.data.y[cross], data.y[cross])  # true labels kept
        assert not torch.allclose(result.data.x[cross], trigger(data.x[cross]), atol=1e-3)
        assert not torch.allclose(result.data.x[cross], data.x[cross], atol=1e-3)
        assert result.data.x[cross].min() >= 0 and result.data.x[cross].max() <= 1

    def test_wanet_cross_generator(self):
        trigger = create_trigger("wanet", make_info((1, 16, 16)))
        x = make_data((1, 16, 16), n=4).x
        a = trigger.cross(x, torch.Generator().manual_seed(1))
        b = trigger.cross(x, torch.Generator().manual_seed(1))
        c = trigger.cross(x, torch.Generator().manual_seed(2))
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert a.shape == x.shape
        assert trigger.cross(x[:0], torch.Generator()).shape == (0, 1, 16, 16)

    def test_wanet_cross_ratio_zero(self):
        result = poison_train(make_data(n=100), spec_for("wanet", params={"cross_ratio": 0.0}))
        assert len(result.cross_idx) == 0 and len(result.poison_idx) == 10


# ------------------------------------------------------------------------------ LC and LF
@pytest.fixture(scope="module")
def digits():
    """The real digits training set at 8x8 (the attacks with a surrogate need real images)."""
    from sau_core.data import load_digits

    return load_digits(resolution=8, seed=0).train


class TestLC:
    """LC: clean-label, hardened within the budget, patched; the test trigger is the patch."""

    def test_poisoned_images_keep_labels_stay_in_budget_and_carry_the_patch(self, digits):
        spec = AttackSpec("lc", {"surrogate_epochs": 2}, target=0, poison_ratio=0.05, seed=0)
        result = poison_train(digits, spec)
        idx = result.poison_idx
        assert len(idx) > 0 and bool((digits.y[idx] == 0).all())  # target-class images only
        assert torch.equal(result.data.y, digits.y)  # every label kept
        trigger = spec.trigger(digits.info)
        mask = trigger.mask  # (H, W): the four corner patches
        assert int(mask.sum()) == 4 * 9
        change = (result.data.x[idx] - digits.x[idx])[..., ~mask]
        assert float(change.abs().max()) <= trigger.config.eps + 1e-6
        assert float(change.abs().max()) > 0  # hardened: not the patch alone
        assert torch.equal(result.data.x[idx][..., mask], trigger.pattern[..., mask].expand(
            len(idx), *trigger.pattern[..., mask].shape))  # fmt: skip

    def test_hardening_raises_the_surrogates_loss(self, digits):
        from sau_core.attacks.surrogate import clean_surrogate

        trigger = create_trigger("lc", digits.info, {})
        model = clean_surrogate(digits, epochs=3, seed=0)
        x, y = digits.x[:64], digits.y[:64]
        hard = trigger.harden(model, x, y)
        loss = torch.nn.functional.cross_entropy
        assert float(loss(model(hard), y)) > 2 * float(loss(model(x), y))
        assert float((hard - x).abs().max()) <= trigger.config.eps + 1e-6
        assert float(hard.min()) >= 0 and float(hard.max()) <= 1

    def test_without_pgd_the_poison_is_the_patch(self, digits):
        trigger = create_trigger("lc", digits.info, {"pgd_steps": 0})
        x, y = digits.x[:5], digits.y[:5]
        assert torch.equal(trigger.poison(x, y, digits, 0), trigger(x))

    def test_one_corner_and_amplitude(self):
        info = make_data((3, 16, 16), n=4).info
        t = create_trigger("lc", info, {"corners": "one", "amplitude": 0.5, "size": 4})
        assert int(t.mask.sum()) == 16 and bool(t.mask[-1, -1]) and not bool(t.mask[0, 0])
        x = torch.zeros(1, 3, 16, 16)
        assert float(t(x).max()) == pytest.approx(0.5)  # half of the white squares

    def test_all2all_is_refused(self):
        with pytest.raises(ValueError, match="clean-label attack"):
            AttackSpec("lc", {}, label_rule="all2all").validate(make_data((1, 8, 8), n=4).info)


class TestLF:
    """LF: a low-pass universal pattern, computed when planted, carried in the spec."""

    @pytest.mark.parametrize("shape", [(1, 8, 8), (1, 16, 16), (3, 32, 32), (3, 17, 12)])
    @pytest.mark.parametrize("cutoff", [0.1, 0.25, 0.5])
    def test_spectrum_above_the_cutoff_is_zero(self, shape, cutoff):
        info = make_data(shape, n=2).info
        t = create_trigger("lf", info, {**example_params("lf"), "cutoff": cutoff})
        spectrum = torch.fft.fft2(t.pattern.double()).abs()  # (C, H, W)
        fy = torch.fft.fftfreq(shape[1], dtype=torch.float64).abs() * 2
        fx = torch.fft.fftfreq(shape[2], dtype=torch.float64).abs() * 2
        high = (fy[:, None] > cutoff + 1e-9) | (fx[None, :] > cutoff + 1e-9)
        assert bool(high.any())
        assert float(spectrum[:, high].max()) < 1e-6 * float(spectrum.max())
        assert float(t.pattern.abs().max()) == pytest.approx(t.config.eps)

    def test_no_pattern_yet_validates_but_cannot_trigger(self):
        info = make_data((1, 8, 8), n=2).info
        spec = AttackSpec("lf", {})
        spec.validate(info)  # the settings are fine; the pattern comes when planted
        assert not spec.prepared()
        with pytest.raises(ValueError, match="computed against a clean model when the backdoor"):
            spec.trigger(info)

    def test_prepare_computes_a_pattern_that_fools_the_surrogate(self):
        from sau_core.attacks import prepare_spec
        from sau_core.attacks.lf import read_pattern
        from sau_core.attacks.surrogate import clean_surrogate
        from sau_core.data import load_digits

        split = load_digits(resolution=8, seed=0)
        spec = AttackSpec("lf", {"steps": 60, "surrogate_epochs": 3}, target=0, seed=0)
        ready = prepare_spec(spec, split.train)
        assert ready.prepared() and ready.params["steps"] == 60
        assert prepare_spec(ready, split.train) is ready  # done once
        again = prepare_spec(spec, split.train)  # the same data and seed: the same pattern
        assert torch.equal(read_pattern(again.params["pattern"]),
                           read_pattern(ready.params["pattern"]))  # fmt: skip
        model = clean_surrogate(split.train, epochs=3, seed=0)
        x = split.test.x[split.test.y != 0]
        trigger = ready.trigger(split.test.info)
        to_target = torch.zeros(len(x), dtype=torch.long)
        loss = torch.nn.functional.cross_entropy
        # what the pattern was optimised for: the surrogate's loss towards the target drops
        # (on 8x8 digits a smooth pattern within 0.2 rarely flips the answer: see docs)
        assert float(loss(model(trigger(x)), to_target)) < 0.9 * float(loss(model(x), to_target))
        assert AttackSpec.from_dict(ready.to_dict()) == ready  # the spec carries it as JSON

    @pytest.mark.parametrize(
        "uri, message",
        [
            ("/etc/passwd", "must be a pattern made by SAU Lab"),
            ("data:image/png;base64,AAAA", "must be a pattern made by SAU Lab"),
            ("data:application/x-safetensors;base64,!!!", "cannot be read"),
            ("data:application/x-safetensors;base64," + "A" * 600_000, "is over"),
        ],
    )
    def test_malformed_patterns_are_refused(self, uri, message):
        info = make_data((1, 8, 8), n=2).info
        with pytest.raises(ValueError, match=message):
            create_trigger("lf", info, {"pattern": uri})

    @pytest.mark.parametrize(
        "tensors, message",
        [
            ({"other": torch.zeros(1, 8, 8)}, "one \\(1 or 3, H, W\\) tensor named 'pattern'"),
            ({"pattern": torch.zeros(2, 8, 8)}, "one \\(1 or 3, H, W\\) tensor"),
            ({"pattern": torch.zeros(8, 8)}, "one \\(1 or 3, H, W\\) tensor"),
            ({"pattern": torch.full((1, 8, 8), float("nan"))}, "finite"),
            ({"pattern": torch.zeros(1, 8, 8, dtype=torch.int64)}, "finite floating-point"),
        ],
    )
    def test_patterns_of_the_wrong_shape_or_kind_are_refused(self, tensors, message):
        import base64

        from safetensors.torch import save

        from sau_core.attacks.lf import PATTERN_URI

        uri = PATTERN_URI + base64.b64encode(save(tensors)).decode("ascii")
        with pytest.raises(ValueError, match=message):
            create_trigger("lf", make_data((1, 8, 8), n=2).info, {"pattern": uri})

    def test_a_pickle_is_never_read(self, tmp_path):
        import base64
        import pickle

        from sau_core.attacks.lf import PATTERN_URI

        marker = tmp_path / "pwned"
        payload = pickle.dumps(_Boom(str(marker)))
        with pytest.raises(ValueError, match="cannot be read"):
            create_trigger("lf", make_data((1, 8, 8), n=2).info,
                           {"pattern": PATTERN_URI + base64.b64encode(payload).decode("ascii")})  # fmt: skip
        assert not marker.exists()


class _Boom:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class TestInputAware:
    """Input-aware: per-image triggers, cross mode, a generator trained jointly."""

    def test_cross_gives_each_image_another_images_trigger(self):
        trigger = trigger_of("inputaware", make_info((1, 8, 8)))
        x = make_data((1, 8, 8), n=6).x
        own = trigger(x)
        crossed = trigger.cross(x, torch.Generator().manual_seed(0))
        pattern, mask = trigger.parts(x)
        for i in range(len(x)):
            assert not torch.allclose(crossed[i], own[i], atol=1e-5)
            others = [j for j in range(len(x)) if j != i]
            match = [j for j in others if torch.allclose(
                crossed[i], (1 - mask[j]) * x[i] + mask[j] * pattern[j].mean(0, keepdim=True),
                atol=1e-5)]  # fmt: skip
            assert match  # the trigger of another image of the batch

    def test_no_generator_yet_validates_but_cannot_trigger(self):
        spec = AttackSpec("inputaware", {})
        spec.validate(make_info())
        assert not spec.prepared()
        with pytest.raises(ValueError, match="trained with a clean model when the backdoor"):
            spec.trigger(make_info())

    def test_the_joint_training_makes_triggers_that_do_not_transfer(self):
        """The paper's intent, measured on the classifier trained jointly with the generator:
        an image's own trigger sends it to the target, another image's trigger does not."""
        from sau_core.attacks.inputaware import _as3, stamp, train_generator
        from sau_core.data import load_digits

        split = load_digits(resolution=16, seed=0)  # at 8x8 a 5% mask is three pixels
        config = make_config("inputaware", {})  # the defaults: 10 epochs, mask density 0.05
        gen, clf = train_generator(split.train, config, target=0, seed=0)
        x = split.test.x[split.test.y != 0]
        with torch.no_grad():
            p, m = gen(_as3(x))
            other = torch.roll(torch.arange(len(x)), 1)
            own = (clf(stamp(x, p, m)).argmax(1) == 0).float().mean()
            cross = (clf(stamp(x, p[other], m[other])).argmax(1) == 0).float().mean()
            clean_acc = (clf(split.test.x).argmax(1) == split.test.y).float().mean()
        # measured: own 0.91, cross 0.19, clean ACC 0.99 (the paper's cross-trigger accuracy on
        # MNIST and CIFAR-10 is about 0.9)
        assert float(own) >= 0.8 and float(cross) <= 0.3 and float(clean_acc) >= 0.9
        assert float(m.mean()) <= config.density * 1.5  # the mask stays small

    @pytest.mark.parametrize(
        "uri, message",
        [
            ("/etc/passwd", "must be a generator made by SAU Lab"),
            ("data:application/x-safetensors;base64,@@", "cannot be read"),
        ],
    )
    def test_malformed_generators_are_refused(self, uri, message):
        with pytest.raises(ValueError, match=message):
            create_trigger("inputaware", make_info(), {"generator": uri})

    def test_a_foreign_or_pickled_generator_is_refused(self, tmp_path):
        import base64
        import pickle

        from safetensors.torch import save

        from sau_core.attacks.inputaware import GENERATOR_URI

        foreign = GENERATOR_URI + base64.b64encode(save({"x": torch.zeros(2)})).decode("ascii")
        with pytest.raises(ValueError, match="does not fit the generator"):
            create_trigger("inputaware", make_info(), {"generator": foreign})
        marker = tmp_path / "pwned"
        raw = pickle.dumps(_Boom(str(marker)))
        with pytest.raises(ValueError, match="cannot be read"):
            create_trigger("inputaware", make_info(),
                           {"generator": GENERATOR_URI + base64.b64encode(raw).decode("ascii")})  # fmt: skip
        assert not marker.exists()


class TestSSBA:
    """SSBA: a residual within the budget, different on every image, that carries one code."""

    @pytest.fixture
    def digits16(self):
        from sau_core.data import load_digits

        return load_digits(resolution=16, seed=0).test.x[:64]

    def test_residuals_differ_per_image_and_stay_in_budget(self, digits16):
        for eps in (0.05, 0.02):
            trigger = create_trigger("ssba", make_info((1, 16, 16)), {"eps": eps})
            r = trigger.residual(digits16)  # (B, 1, H, W)
            assert float(r.abs().max()) <= eps + 1e-6
            assert float(r.abs().mean()) > 0.1 * eps  # a residual, not nothing
            # not one universal pattern: across images it varies by a good share of its size
            assert float(r.std(0).mean() / r.abs().mean()) > 0.25
            assert not torch.allclose(r[0], r[1], atol=eps / 10)
            assert torch.allclose(trigger(digits16), (digits16 + r).clamp(0, 1))

    @pytest.mark.parametrize("shape", [(1, 8, 8), (1, 16, 16), (3, 32, 32)], ids=str)
    def test_the_decoder_recovers_the_code(self, digits16, shape):
        from sau_core.attacks.ssba import code_bits, decode, load_stega
        from sau_core.data import resize

        x = resize(digits16, shape[1]).expand(-1, shape[0], -1, -1).contiguous()
        decoder = load_stega("decoder")
        for seed in (0, 3):
            # at the budget the encoder and decoder were trained for (the attack's default,
            # 0.1, scales the residual up: the model learns it better, the decoder reads it a
            # little worse: 0.94-0.97 at 16x16)
            trigger = create_trigger("ssba", make_info(shape), {"code_seed": seed, "eps": 0.05})
            with torch.no_grad():
                bits = decode(decoder, trigger(x)) > 0
                plain = decode(decoder, x) > 0
            code = code_bits(seed, decoder.bits).bool()
            # measured (code seeds 0 and 3): 0.87-0.91 at 8x8 (64 pixels carry 16 bits), 0.99
            # and up at 16x16 and 32x32; assets/ssba/manifest.json: the same on random codes
            floor = 0.8 if shape[1] == 8 else 0.95
            assert float((bits == code).float().mean()) >= floor
            assert float((plain == code).float().mean()) < 0.75  # clean images carry no code

    def test_another_code_seed_hides_another_code(self, digits16):
        from sau_core.attacks.ssba import code_bits

        a = create_trigger("ssba", make_info((1, 16, 16)), {"code_seed": 0})
        b = create_trigger("ssba", make_info((1, 16, 16)), {"code_seed": 1})
        assert not torch.equal(code_bits(0, 16), code_bits(1, 16))
        assert not torch.allclose(a.residual(digits16), b.residual(digits16), atol=1e-3)

    def _folder(self, folder, files: dict[str, bytes], bits=16, width=32):
        import hashlib

        from sau_core.attacks.ssba import MANIFEST

        folder.mkdir(exist_ok=True)
        for name, raw in files.items():
            (folder / name).write_bytes(raw)
        (folder / MANIFEST).write_text(json.dumps({
            "bits": bits, "width": width,
            "sha256": {n: hashlib.sha256(r).hexdigest() for n, r in files.items()}}))  # fmt: skip
        return folder

    def test_a_missing_changed_foreign_or_pickled_encoder_is_refused(self, tmp_path):
        import pickle

        from safetensors.torch import save

        from sau_core.attacks.ssba import ENCODER, load_stega, ssba_dir

        good = (ssba_dir() / ENCODER).read_bytes()
        assert load_stega("encoder", self._folder(tmp_path / "ok", {ENCODER: good})).bits == 16
        with pytest.raises(ValueError, match="manifest .* is missing or unreadable"):
            load_stega("encoder", tmp_path)
        bad_sizes = self._folder(tmp_path / "sizes", {ENCODER: good}, bits=0)
        with pytest.raises(ValueError, match="missing or unreadable .*out of range"):
            load_stega("encoder", bad_sizes)
        folder = self._folder(tmp_path / "gone", {ENCODER: good})
        (folder / ENCODER).unlink()
        with pytest.raises(ValueError, match="is missing; restore it"):
            load_stega("encoder", folder)
        folder = self._folder(tmp_path / "damaged", {ENCODER: good})
        (folder / ENCODER).write_bytes(good[:-8] + b"\x00" * 8)  # changed after hashing
        with pytest.raises(ValueError, match="does not match its SHA-256"):
            load_stega("encoder", folder)
        foreign = save({"inp.weight": torch.zeros(4, 3, 3, 3)})
        with pytest.raises(ValueError, match="does not fit its architecture"):
            load_stega("encoder", self._folder(tmp_path / "foreign", {ENCODER: foreign}))
        marker = tmp_path / "pwned"
        payload = pickle.dumps(_Boom(str(marker)))
        with pytest.raises(ValueError, match="cannot be read as safetensors"):
            load_stega("encoder", self._folder(tmp_path / "pickle", {ENCODER: payload}))
        assert not marker.exists()  # never unpickled

    def test_the_trigger_names_a_damaged_encoder(self, tmp_path, monkeypatch):
        import shutil

        from sau_core.attacks import ssba

        shutil.copytree(ssba.ssba_dir(), tmp_path / "ssba")
        (tmp_path / "ssba" / ssba.ENCODER).write_bytes(b"not weights")
        monkeypatch.setattr(ssba, "ssba_dir", lambda: tmp_path / "ssba")
        with pytest.raises(ValueError, match="SSBA encoder .* does not match its SHA-256"):
            create_trigger("ssba", make_info(), {})

    def test_a_planted_spec_records_its_encoder_and_refuses_another(self, tmp_path, monkeypatch):
        from safetensors.torch import save

        from sau_core.attacks import AttackSpec, param_schema, prepare_spec, ssba
        from sau_core.data import load_digits

        train = load_digits(resolution=8, seed=0).train
        spec = prepare_spec(AttackSpec("ssba", {}, target=0, poison_ratio=0.1, seed=0), train)
        installed = ssba.encoder_sha256()
        assert spec.params["encoder_sha256"] == installed and len(installed) == 64
        spec.validate(train.info)  # the encoder it was planted with: fits
        assert prepare_spec(spec, train) == spec  # a recorded one is kept
        old = AttackSpec("ssba", {"eps": 0.1})  # a spec from before the pin: the shipped encoder
        old.validate(train.info)
        # the encoder remade: another file with its own manifest
        enc = ssba.load_stega("encoder")
        state = {k: v + 0.01 for k, v in enc.state_dict().items()}
        remade = self._folder(tmp_path / "remade", {ssba.ENCODER: save(state)})
        monkeypatch.setattr(ssba, "ssba_dir", lambda: remade)
        assert ssba.encoder_sha256() != installed
        with pytest.raises(ValueError, match=r"made with the encoder .*, but the installed one"):
            spec.validate(train.info)
        old.validate(train.info)  # nothing recorded: the installed one, as before
        with pytest.raises(ValueError, match="'encoder_sha256' must be 64 hexadecimal digits"):
            AttackSpec("ssba", {"encoder_sha256": "abc"}).validate(train.info)
        # recorded, never typed: the forms leave it out
        hidden = [e["name"] for e in param_schema("ssba", train.info) if e.get("hidden")]
        assert hidden == ["encoder_sha256"]

    def test_the_make_script_writes_a_loadable_encoder_and_decoder(self, tmp_path):
        import importlib.util
        from pathlib import Path

        from sau_core.attacks.ssba import load_stega

        path = Path(__file__).resolve().parents[1] / "assets" / "make_ssba.py"
        spec = importlib.util.spec_from_file_location("make_ssba", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.main(["--steps", "4", "--out", str(tmp_path)]) == 0
        meta = json.loads((tmp_path / "manifest.json").read_text())
        assert meta["steps"] == 4 and set(meta["sha256"]) == {"encoder.safetensors",
                                                              "decoder.safetensors"}  # fmt: skip
        assert load_stega("encoder", tmp_path).bits == load_stega("decoder", tmp_path).bits == 16
