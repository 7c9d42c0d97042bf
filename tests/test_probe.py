"""The probe (issue 19): re-tuning, trigger recovery and the verdict, with answers known by hand."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sau_core.attacks import AttackSpec
from sau_core.data import DatasetInfo, ImageData, Split
from sau_core.probe import (
    ACC_DROP,
    ASR_HIGH,
    ASR_LOW,
    PULL,
    ReactivationConfig,
    first_back,
    match,
    recover,
    region_score,
    retune,
    retune_set,
    trigger_region,
    verdict,
)

INFO = DatasetInfo("fake", 4, (1, 8, 8), (0.5,), (0.25,), natural=False)


# --------------------------------------------------------------------------- trigger recovery
def _badnets_delta(n: int) -> torch.Tensor:
    """Perturbations that are BadNets' own 3x3 white patch at the bottom right on black."""
    d = torch.zeros(n, 1, 8, 8)
    d[:, :, -3:, -3:] = 1.0
    return d


def test_recovery_of_perturbations_that_are_the_trigger_itself():
    deltas = torch.cat([_badnets_delta(6), 0.1 * torch.randn(3, 1, 8, 8)])
    landed = torch.tensor([0] * 6 + [2, 3, 2])
    source = torch.tensor([1, 2, 3, 1, 2, 3, 1, 1, 1])
    patterns = recover(deltas, landed, source)
    assert [(p.cls, p.count) for p in patterns] == [(0, 6), (2, 2), (3, 1)]
    top = patterns[0]
    assert torch.equal(top.mean, _badnets_delta(1)[0])
    assert float(top.consistency[-3:, -3:].min()) == 1.0  # every one pushes the patch up
    assert float(top.consistency[:5].max()) == 0.0  # and nothing elsewhere
    spec = AttackSpec("badnets", {"size": 3, "location": "bottom-right"}, target=0)
    region = trigger_region(spec, INFO)
    assert region is not None and int(region.sum()) == 9
    score = match(top.mean, spec, INFO)
    assert score["kind"] == "region" and score["inside"] == pytest.approx(1.0)
    assert score["area"] == pytest.approx(9 / 64) and score["lift"] == pytest.approx(64 / 9)


def test_perturbations_that_do_not_change_the_answer_are_left_out():
    deltas = _badnets_delta(4)
    patterns = recover(deltas, torch.tensor([1, 1, 0, 0]), torch.tensor([1, 1, 2, 3]))
    assert [(p.cls, p.count) for p in patterns] == [(0, 2)]


def test_region_score_of_an_even_pattern_has_lift_one():
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[:2, :2] = True
    score = region_score(torch.ones(3, 8, 8), region)
    assert score["inside"] == pytest.approx(4 / 64) and score["lift"] == pytest.approx(1.0)


def test_a_whole_image_trigger_is_matched_by_cosine_and_an_unknown_one_not_at_all():
    spec = AttackSpec("blended", {}, target=0)
    assert trigger_region(spec, INFO) is None
    grey = torch.full((1, 1, 8, 8), 0.5)
    added = (spec.trigger(INFO)(grey) - grey)[0]
    assert match(added, spec, INFO)["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert match(-added, spec, INFO)["cosine"] == pytest.approx(-1.0, abs=1e-5)
    assert match(added, None, INFO) == {"known": False}


# ------------------------------------------------------------------------------ re-tuning
class _Lookup(nn.Module):
    """Answers the target (0) when the bottom-right pixel is bright, else the class coded in the
    top-left pixel: a backdoored stub whose answers are known by hand. Its one weight moves in
    training (it adds a hundredth to every logit), so a probe that trained the model itself,
    not a copy, would show; the answers do not change."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        cls = (x[:, 0, 0, 0] * 3.99).long().clamp(0, 3)
        out = nn.functional.one_hot(cls, 4).float() * 10 + 0.01 * self.w * x.mean()
        out[x[:, 0, -1, -1] > 0.9] = torch.tensor([10.0, 0, 0, 0]) + 0.01 * self.w
        return out


def _split(n=40) -> Split:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 4
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.5
    x[:, 0, 0, 0] = (y.float() + 0.5) / 4
    data = ImageData(x, y, INFO)
    return Split(data, ImageData(x.clone(), y.clone(), INFO))


def test_retune_set_holds_the_clean_images_and_exactly_the_poisoned_ones():
    split = _split()
    spec = AttackSpec("badnets", {"size": 1, "location": "bottom-right"}, target=0)
    config = ReactivationConfig(clean=20, poisoned=3, seed=1)
    data = retune_set(split.train, spec, config)
    assert len(data) == 23
    triggered = data.x[:, 0, -1, -1] == 1.0
    assert int(triggered.sum()) == 3 and bool((data.y[triggered] == 0).all())


def test_retune_records_asr_before_and_after_every_epoch_and_leaves_the_model_alone():
    from sau_core.pipeline import backdoor_for

    split = _split()
    spec = AttackSpec("badnets", {"size": 1, "location": "bottom-right"}, target=0)
    model = _Lookup().requires_grad_(False)  # as a defence hands its model back
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = retune(
        model, split, spec, backdoor_for(split, spec), ReactivationConfig(epochs=3, clean=20)
    )
    assert r.asr == [1.0] * 4 and len(r.acc) == 4  # the stub's backdoor never goes away
    assert r.back_at == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(p.requires_grad for p in model.parameters())  # still frozen


def test_first_back():
    assert first_back([0.0, 0.2, 0.6, 0.9], 0.5) == 2
    assert first_back([0.0, 0.2, 0.4], 0.5) is None
    assert first_back([0.5], 0.5) == 0


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"lr": 0}, {"back": 1.5}, {"poisoned": "many"}])
def test_retune_settings_out_of_range_are_refused(bad):
    with pytest.raises(ValueError, match="re-tuning parameter"):
        ReactivationConfig(**bad)


# -------------------------------------------------------------------------------- verdict
def _v(**kw):
    args = {"acc": 0.98, "asr": 0.01, "ra": 0.95, "pull": {1: 0.02, 2: 0.01},
            "acc_before": 0.99, "reactivation": None}  # fmt: skip
    return verdict(**{**args, **kw})


def _re(k_model, k_base, epochs=5):
    curve = lambda k: [0.0] * (k or epochs + 1) + [0.9] * (epochs + 1 - (k or epochs + 1))  # noqa: E731
    return {"model": {"asr": curve(k_model), "back_at": k_model, "poisoned": 5},
            "baseline": {"asr": curve(k_base), "back_at": k_base}}  # fmt: skip


def _reading(v, key):
    return next(r for r in v["readings"] if r["key"] == key)


@pytest.mark.parametrize("asr, headline", [
    (ASR_HIGH, "still there"), (ASR_HIGH - 0.01, "partly suppressed"),
    (ASR_LOW + 0.01, "partly suppressed"), (ASR_LOW, "removed, as far as these tests reach"),
])  # fmt: skip
def test_asr_thresholds(asr, headline):
    assert _v(asr=asr, reactivation=_re(None, None))["headline"].startswith(headline)


@pytest.mark.parametrize("share, redirected", [(PULL, True), (PULL - 0.01, False)])
def test_pull_threshold(share, redirected):
    v = _v(pull={1: share, 3: 0.0}, reactivation=_re(None, None))
    assert (v["headline"] == "redirected to class 1") is redirected
    assert ("redirected, not removed" in _reading(v, "pull")["reading"]) is redirected


@pytest.mark.parametrize("drop, kept", [(ACC_DROP - 0.001, True), (ACC_DROP + 0.001, False)])
def test_acc_threshold(drop, kept):
    r = _reading(_v(acc=0.9, acc_before=0.9 + drop), "acc")
    assert (r["reading"] == "clean accuracy kept") is kept
    assert r["level"] == ("good" if kept else "bad")


@pytest.mark.parametrize("k_model, k_base, dormant", [
    (2, None, True), (2, 3, True), (3, 3, False), (None, None, False), (4, 2, False),
])  # fmt: skip
def test_dormant_when_the_backdoor_comes_back_sooner_than_in_a_never_backdoored_model(
    k_model, k_base, dormant
):
    v = _v(reactivation=_re(k_model, k_base))
    assert v["headline"].startswith("dormant") is dormant
    if dormant:
        assert f"after {k_model} epochs" in v["headline"]


def test_partly_suppressed_and_dormant_say_both():
    v = _v(asr=0.3, reactivation=_re(1, None))
    assert v["headline"] == "partly suppressed: ASR 30%, and dormant (back after 1 epoch)"
    assert v["level"] == "bad"


def test_removed_at_a_cost_in_accuracy_says_so():
    v = _v(acc=0.80, acc_before=0.99, reactivation=_re(None, None))
    assert v["headline"] == ("removed, as far as these tests reach; clean accuracy fell by "
                             "19.0 points")  # fmt: skip
    assert v["level"] == "warn"


def test_no_clean_test_set_leaves_acc_unmeasured():
    v = verdict(acc=float("nan"), asr=0.0, ra=0.9, pull=None, acc_before=0.99)
    assert _reading(v, "acc")["value"] == "not measured" and "nan" not in json.dumps(v)


def test_redirected_and_dormant_say_both():
    v = _v(pull={4: 0.7}, reactivation=_re(1, None))
    assert v["headline"] == "redirected to class 4, and dormant (back after 1 epoch)"


def test_without_retuning_low_asr_is_only_removed_at_the_surface():
    v = _v()
    assert v["headline"] == "removed at the surface (re-tuning not run)"
    assert _reading(v, "reactivation")["level"] == "unknown"


def test_an_unknown_trigger_says_what_it_cannot_measure():
    v = verdict(acc=0.97, asr=None, ra=None, pull=None)
    assert v["headline"] == "cannot judge: the trigger is unknown"
    assert [r["key"] for r in v["readings"]] == ["acc", "asr"]
    assert "cannot be measured" in v["readings"][1]["reading"]
    json.dumps(v)  # JSON-able
