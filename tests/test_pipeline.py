"""The demo preset and the plain-words caveats about settings where SAU is weak."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sau_core.data import DataSpec
from sau_core.defenses.sau import SAUConfig, default_sau_config
from sau_core.events import SAURound
from sau_core.lab.caveats import (
    TRIGGER_PULL_WARNING,
    landing_summary,
    run_caveats,
    sau_caveats,
    trigger_caveats,
)
from sau_core.lab.presets import DEMO, TEACHING_PRESETS, attack_setup
from sau_core.metrics import Evaluation


def test_demo_preset_is_valid() -> None:
    assert DEMO.sau == DEMO.sau.validate()
    assert DEMO.train == DEMO.train.validate()
    assert 0 < DEMO.clean_ratio <= 1
    DEMO.attack.validate(DEMO.data.load().info)


def test_demo_keeps_the_reference_sau_numbers_except_batch_and_rounds() -> None:
    ref = SAUConfig()
    changed = {k for k, v in DEMO.sau.to_dict().items() if ref.to_dict()[k] != v}
    assert changed <= {"batch_size", "rounds"}
    assert DEMO.sau.batch_size == default_sau_config("digits").batch_size


def test_no_caveat_for_the_demo_setting() -> None:
    n_clean = round(DEMO.clean_ratio * len(DEMO.data.load().train))
    assert sau_caveats(DEMO.data, n_clean, DEMO.sau, DEMO.attack.name) == []


def test_caveat_for_native_8x8_digits() -> None:
    notes = sau_caveats(DataSpec("digits", None, {"resolution": 8}), 400, DEMO.sau, "badnets")
    assert len(notes) == 1 and "8x8" in notes[0]


def test_caveat_when_the_batch_exceeds_the_clean_set() -> None:
    notes = sau_caveats({"name": "cifar10", "kwargs": {}}, 100, SAUConfig(), "badnets")
    assert len(notes) == 1 and "larger than the clean set (100 images)" in notes[0]
    assert sau_caveats({"name": "cifar10", "kwargs": {}}, 2500, SAUConfig(), "badnets") == []


def test_caveat_for_attacks_measured_weak_on_digits() -> None:
    # no model named: the demo's (wide_cnn), where Blended is removed and WaNet barely takes
    assert sau_caveats(DEMO.data, 400, DEMO.sau, "blended") == []
    assert len(sau_caveats(DEMO.data, 400, DEMO.sau, "wanet")) == 1
    assert len(sau_caveats(DEMO.data, 400, DEMO.sau, "blended", "small_cnn")) == 1
    assert sau_caveats(DEMO.data, 400, DEMO.sau, "sig") == []
    assert sau_caveats({"name": "cifar10"}, 2500, SAUConfig(), "blended") == []


def test_an_attack_caveat_applies_to_the_models_it_was_measured_on() -> None:
    """Blended is weak on the small CNN only (wide_cnn and the ResNet10 remove it); WaNet's note (the
    attack barely takes) holds for both; a model never measured gets no claim either way."""
    assert len(sau_caveats(DEMO.data, 400, DEMO.sau, "blended", "small_cnn")) == 1
    assert sau_caveats(DEMO.data, 400, DEMO.sau, "blended", "preact_resnet10") == []
    assert sau_caveats(DEMO.data, 400, DEMO.sau, "blended", "wide_cnn") == []
    assert sau_caveats(DEMO.data, 400, DEMO.sau, "blended", "vgg19_bn") == []
    for arch in ("small_cnn", "wide_cnn", "preact_resnet10"):
        assert len(sau_caveats(DEMO.data, 400, DEMO.sau, "wanet", arch)) == 1


@pytest.mark.parametrize(
    ("name", "arch"), [("blended", "wide_cnn"), ("blended_resnet", "preact_resnet10")]
)
def test_the_blended_lessons_use_the_models_they_were_measured_on(name: str, arch: str) -> None:
    lesson = TEACHING_PRESETS[name].setup
    assert (lesson.arch, lesson.attack.name) == (arch, "blended")
    assert sau_caveats(lesson.data, 400, lesson.sau, lesson.attack.name, lesson.arch) == []
    assert replace(lesson, arch=DEMO.arch, attack=DEMO.attack) == DEMO  # the rest is the demo's


def test_the_lesson_on_a_weak_setting_says_so() -> None:
    lesson = TEACHING_PRESETS["blended_small"].setup
    assert (lesson.arch, lesson.attack.name) == ("small_cnn", "blended")
    notes = sau_caveats(lesson.data, 400, lesson.sau, lesson.attack.name, lesson.arch)
    assert len(notes) == 1 and "small CNN" in notes[0]


def test_each_attack_lesson_is_its_ready_made_setting() -> None:
    """The preset named after an attack is exactly the setting its ready-made checkpoint is made
    with (the dashboard hands out that checkpoint for it); WaNet's is on the small CNN, where
    the attack takes (ASR 0.2-0.46 against 0.04-0.07 on wide_cnn)."""
    assert DEMO.arch == "wide_cnn" and TEACHING_PRESETS["badnets"].setup == DEMO
    for attack in ("badnets", "blended", "sig", "wanet", "lc", "lf", "ssba", "inputaware"):
        setup = attack_setup(attack)
        assert TEACHING_PRESETS[attack].setup == setup
        assert setup.attack == replace(DEMO.attack, name=attack)
        assert setup.arch == ("small_cnn" if attack == "wanet" else DEMO.arch)
        assert replace(setup, arch=DEMO.arch, attack=DEMO.attack) == DEMO
    base = replace(DEMO, arch="preact_resnet10")  # another base keeps its own model
    assert attack_setup("blended", base).arch == "preact_resnet10"
    assert attack_setup("wanet", base).arch == "small_cnn"


def _round(potential: int, saturated: int, rnd: int = 1) -> SAURound:
    return SAURound(round=rnd, rounds=60, acc=0.9, asr=0.9, ra=0.0, per_class_asr=None, lr=1e-4,
                    elapsed=1.0, eta=10.0, adv_h=100, adv_h0=100, common=90, shared=90, n=404,
                    disagreement=0.0, l_cl=0.5, l_shared=0.1, potential_poison=potential,
                    saturated=saturated)  # fmt: skip


def test_run_caveat_for_a_saturated_model_reads_the_first_round() -> None:
    (note,) = run_caveats([_round(400, 352), _round(400, 0, 2)])
    assert "352 of the 400" in note and "label smoothing" in note
    # the same from the records a run directory keeps (dicts), and a later round does not count
    assert run_caveats([{"potential_poison": 400, "saturated": 352}]) == [note]
    assert run_caveats([_round(400, 100), _round(400, 400, 2)]) == []


def test_no_run_caveat_without_saturation_or_rounds() -> None:
    assert run_caveats([]) == []
    assert run_caveats([_round(0, 0)]) == []
    assert run_caveats([_round(400, 199)]) == []
    assert run_caveats([{"round": 1, "shared": 3}]) == []  # a record from before the count existed


def test_landing_summary_names_the_class_that_takes_most_in_round_one() -> None:
    first = {"round": 1, "adv_classes": [2, 92, 6]}
    assert landing_summary([first]) == (
        "h0's adversarial examples land most on class 1: 92% of them in round 1"
    )
    later = {"round": 60, "adv_classes": [30, 8, 62]}
    assert landing_summary([first, {"round": 2}, later]).endswith(
        "class 1: 92% of them in round 1, 8% in round 60"
    )
    assert landing_summary([]) is None
    assert landing_summary([{"round": 1, "adv_classes": [0, 0, 0]}, {"round": 2}]) is None


def test_trigger_caveat_when_the_trigger_steers_to_another_class() -> None:
    """After SAU the trigger may send images to a class that is neither theirs nor the target
    (the demo's BadNets model: 70% of them to class 1). ASR misses it; the note says so."""
    after = {"acc": 0.98, "asr": 0.01, "ra": 0.37, "off_target": {"1": 0.70, "2": 0.10}}
    (note,) = trigger_caveats(after)
    assert "class 1" in note and "70%" in note and "RA" in note
    assert trigger_caveats(Evaluation.from_dict(after)) == [note]  # an Evaluation alike
    at_line = {**after, "off_target": {"1": TRIGGER_PULL_WARNING}}
    assert len(trigger_caveats(at_line)) == 1
    below = {**after, "off_target": {"1": TRIGGER_PULL_WARNING - 0.01, "2": 0.2}}
    assert trigger_caveats(below) == []
    # no trigger known, no final metrics, or metrics written before the measure: nothing
    assert trigger_caveats({**after, "off_target": None}) == []
    assert trigger_caveats({"acc": 0.98, "asr": 0.01, "ra": 0.9}) == []
    assert trigger_caveats(None) == []


def test_a_search_that_misses_the_target_is_named():
    """Round 1's examples that fool h0 land 10% on the target: a note with the figures; 50%:
    none; an unknown target: none."""
    from sau_core.lab.caveats import LANDING_WARNING, run_caveats

    def rounds(on_target: int) -> list[dict]:
        counts = [0] * 10
        counts[7], counts[8] = on_target, 100 - on_target
        return [{"round": 1, "adv_classes": counts, "potential_poison": 100, "saturated": 0}]

    notes = run_caveats(rounds(10), target=7)
    assert (
        len(notes) == 1
        and "only 10% of the examples that fool h0 land on the target, class 7" in notes[0]
    )
    assert "class 8 takes 90%" in notes[0] and "14-16%" in notes[0]
    assert run_caveats(rounds(int(100 * LANDING_WARNING)), target=7) == []
    assert run_caveats(rounds(50), target=7) == [] and run_caveats(rounds(10)) == []
