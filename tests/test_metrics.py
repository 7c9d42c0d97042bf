"""Tests for ``sau_core.metrics``: ACC, ASR, RA, per-class ASR, the confusion matrix and DER.

The models here are stubs whose every prediction is fixed by hand, so each expected number is
a small fraction that can be checked on paper:

- :class:`LookupModel` reads an image's id from its top-left pixel and answers from one table
  for clean images and another for triggered ones (BadNets, 1x1 white patch bottom-right);
- :class:`ConstantModel` always predicts class 0.

The tiny test set has 6 images of 4x4 pixels, labels ``[0, 0, 1, 1, 2, 2]`` (K = 3).
Grouped kornia-style: smoke, exception, cardinality, feature.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sau_core.attacks import AttackSpec, BackdoorTest, backdoor_test
from sau_core.data import DatasetInfo, ImageData
from sau_core.metrics import (
    Evaluation,
    confusion_matrix,
    der,
    evaluate,
    off_target_pull,
    per_class_asr,
    predict,
)

K = 3
Y = [0, 0, 1, 1, 2, 2]
CLEAN_PRED = [0, 1, 1, 1, 2, 0]  # ACC 4/6
TRIG_PRED = [0, 0, 0, 0, 2, 0]  # predictions once the 1x1 trigger is stamped
INFO = DatasetInfo("tiny", K, (1, 4, 4), (0.5,), (0.5,), natural=False)
BADNETS_1PX = {"size": 1, "location": "bottom-right", "pattern": "white"}


class LookupModel(nn.Module):
    """Predicts ``clean[id]`` or, when pixel (3, 3) is white, ``triggered[id]``.

    The id of image i is stored as i / 100 in pixel (0, 0). Logits are one-hot. It also records
    the ``training`` flag it saw in each forward.
    """

    def __init__(self, clean: list[int], triggered: list[int], k: int = K) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))  # predict() looks up the device here
        self.clean = torch.tensor(clean)
        self.triggered = torch.tensor(triggered)
        self.k = k
        self.seen_training: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_training.append(self.training)
        ids = (x[:, 0, 0, 0] * 100).round().long()
        hit = x[:, 0, -1, -1] > 0.999
        pred = torch.where(hit, self.triggered[ids], self.clean[ids])
        return F.one_hot(pred, self.k).float() + 0 * self.dummy


class ConstantModel(nn.Module):
    """Always class 0."""

    def __init__(self, k: int = K) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), self.k)
        logits[:, 0] = 1.0
        return logits + 0 * self.dummy


@pytest.fixture
def test_set() -> ImageData:
    x = torch.zeros(6, 1, 4, 4)
    x[:, 0, 0, 0] = torch.arange(6) / 100  # ids; the bottom-right pixel stays black
    return ImageData(x, torch.tensor(Y), INFO)


def _spec(rule: str = "all2one", target: int = 0) -> AttackSpec:
    return AttackSpec("badnets", BADNETS_1PX, target=target, label_rule=rule)


# ------------------------------------------------------------------------------------- smoke
def test_evaluate_clean_only(test_set: ImageData) -> None:
    ev = evaluate(LookupModel(CLEAN_PRED, TRIG_PRED), test_set.x, test_set.y, num_classes=K)
    assert isinstance(ev, Evaluation)
    assert ev.acc == pytest.approx(4 / 6)
    assert ev.asr is None and ev.ra is None and ev.per_class_asr is None
    assert ev.n_clean == 6 and ev.n_backdoor == 0


def test_stub_sees_trigger(test_set: ImageData) -> None:
    """Sanity check of the stub itself: the BadNets patch is what flips its answers."""
    bd = backdoor_test(test_set, _spec("all2all"))
    assert torch.equal(bd.x[:, 0, 3, 3], torch.ones(6))
    assert torch.equal(bd.x[:, 0, 0, 0], test_set.x[:, 0, 0, 0])
    assert predict(LookupModel(CLEAN_PRED, TRIG_PRED), bd.x).tolist() == TRIG_PRED


# --------------------------------------------------------------------------------- exception
@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"acc": 0.9, "asr": None}, {"acc": 0.9, "asr": 0.1}),
        ({"acc": 0.9, "asr": 0.9}, {"acc": 0.9, "asr": None}),
        ({"acc": 0.9}, {"acc": 0.9}),
        (Evaluation(acc=0.9), Evaluation(acc=0.8)),
    ],
)
def test_der_without_asr(before, after) -> None:
    with pytest.raises(ValueError, match="ASR"):
        der(before, after)


# ------------------------------------------------------------------------------- cardinality
def test_confusion_matrix_by_hand() -> None:
    cm = confusion_matrix(torch.tensor(CLEAN_PRED), torch.tensor(Y), K)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert int(cm.sum()) == 6
    # rows are true classes: the row sums are the class counts
    assert cm.sum(1).tolist() == [2, 2, 2]


def test_confusion_matrix_empty_classes() -> None:
    cm = confusion_matrix(torch.tensor([4]), torch.tensor([1]), 5)
    assert cm.shape == (5, 5)
    assert int(cm[1, 4]) == 1 and int(cm.sum()) == 1


def test_per_class_asr_leaves_out_classes_without_samples() -> None:
    pred = torch.tensor([0, 0, 2, 0])
    y = torch.tensor([1, 1, 2, 2])
    target = torch.zeros(4, dtype=torch.long)
    assert per_class_asr(pred, y, target, K) == {1: 1.0, 2: 0.5}
    # with 5 classes, 0, 3 and 4 still have no backdoor sample
    assert per_class_asr(pred, y, target, 5) == {1: 1.0, 2: 0.5}


def test_predict_batches_and_empty(test_set: ImageData) -> None:
    model = LookupModel(CLEAN_PRED, TRIG_PRED)
    pred = predict(model, test_set.x, batch_size=4)
    assert pred.tolist() == CLEAN_PRED and pred.dtype == torch.long
    assert len(model.seen_training) == 2  # 6 images in batches of 4
    empty = predict(model, test_set.x[:0])
    assert empty.shape == (0,) and empty.dtype == torch.long


# ----------------------------------------------------------------------------------- feature
def test_all2one(test_set: ImageData) -> None:
    bd = backdoor_test(test_set, _spec("all2one", target=0))
    # only images whose true label is not the target: ids 2..5, labels [1, 1, 2, 2]
    assert bd.index.tolist() == [2, 3, 4, 5]
    model = LookupModel(CLEAN_PRED, TRIG_PRED)
    ev = evaluate(model, test_set.x, test_set.y, bd, num_classes=K)
    # triggered predictions for ids 2..5: [0, 0, 2, 0]
    assert ev.acc == pytest.approx(4 / 6)
    assert ev.asr == pytest.approx(3 / 4)  # three of them go to 0
    assert ev.ra == pytest.approx(1 / 4)  # only id 4 keeps its true label 2
    assert ev.per_class_asr == pytest.approx({1: 1.0, 2: 0.5})
    assert 0 not in ev.per_class_asr
    assert ev.confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert ev.n_clean == 6 and ev.n_backdoor == 4
    # no image is pulled off target: class 0 is every image's target, so it has no entry;
    # the class-2 images go to 2 or 0, the class-1 images to 0
    assert ev.off_target == {1: 0.0, 2: 0.0}


def test_all2all(test_set: ImageData) -> None:
    bd = backdoor_test(test_set, _spec("all2all"))
    assert bd.index.tolist() == list(range(6))
    assert bd.target.tolist() == [1, 1, 2, 2, 0, 0]  # (y + 1) mod 3
    model = LookupModel(CLEAN_PRED, [1, 1, 2, 0, 0, 0])
    ev = evaluate(model, test_set.x, test_set.y, bd, num_classes=K)
    assert ev.asr == pytest.approx(5 / 6)  # only id 3 misses (0 instead of 2)
    assert ev.ra == pytest.approx(0.0)
    assert ev.per_class_asr == pytest.approx({0: 1.0, 1: 0.5, 2: 1.0})
    assert ev.n_backdoor == 6
    # class 0 is neither the label nor the target of ids 2 and 3 (y 1, target 2); id 3 goes there
    assert ev.off_target == pytest.approx({0: 0.5, 1: 0.0, 2: 0.0})


def test_constant_model(test_set: ImageData) -> None:
    bd = backdoor_test(test_set, _spec("all2one", target=0))
    ev = evaluate(ConstantModel(), test_set.x, test_set.y, bd, num_classes=K)
    assert ev.acc == pytest.approx(2 / 6)
    assert ev.asr == pytest.approx(1.0)
    assert ev.ra == pytest.approx(0.0)
    assert ev.per_class_asr == {1: 1.0, 2: 1.0}
    assert ev.confusion == [[2, 0, 0], [2, 0, 0], [2, 0, 0]]


def test_constant_model_other_target(test_set: ImageData) -> None:
    bd = backdoor_test(test_set, _spec("all2one", target=2))
    ev = evaluate(ConstantModel(), test_set.x, test_set.y, bd, num_classes=K)
    assert bd.index.tolist() == [0, 1, 2, 3]
    assert ev.asr == pytest.approx(0.0)
    assert ev.ra == pytest.approx(0.5)  # the two class-0 images
    assert ev.per_class_asr == {0: 0.0, 1: 0.0}
    # the trigger now sends everything to 0, not to the target 2: both class-1 images
    assert ev.off_target == {0: 1.0, 1: 0.0}


def test_off_target_pull_by_hand() -> None:
    """Per class c, the images with label != c and target != c that go to c."""
    y = torch.tensor([1, 1, 2, 2, 3])
    target = torch.zeros(5, dtype=torch.long)
    pred = torch.tensor([3, 1, 3, 0, 3])  # two of the four non-3 images go to 3
    assert off_target_pull(pred, y, target, 4) == pytest.approx(
        {1: 0.0, 2: 0.0, 3: 0.5}
    )  # 1: of ids 2-4 none; 2: of ids 0, 1, 4 none; 0 is the target: no entry
    assert off_target_pull(pred[:0], y[:0], target[:0], 4) == {}


def test_backdoor_test_built_by_hand(test_set: ImageData) -> None:
    """evaluate only needs x, y (true labels) and target from the backdoor set."""
    x = test_set.x[[1, 4]].clone()
    x[:, 0, 3, 3] = 1.0
    bd = BackdoorTest(x, torch.tensor([0, 2]), torch.tensor([1, 1]), torch.tensor([1, 4]))
    model = LookupModel(CLEAN_PRED, [0, 1, 0, 0, 1, 0])
    ev = evaluate(model, test_set.x, test_set.y, bd, num_classes=K)
    assert ev.asr == pytest.approx(1.0) and ev.ra == pytest.approx(0.0)
    assert ev.per_class_asr == {0: 1.0, 2: 1.0}


def test_empty_backdoor_set_means_no_asr(test_set: ImageData) -> None:
    e = torch.empty(0, dtype=torch.long)
    bd = BackdoorTest(test_set.x[:0], e, e, e)
    ev = evaluate(ConstantModel(), test_set.x, test_set.y, bd, num_classes=K)
    assert ev.asr is None and ev.n_backdoor == 0


def test_num_classes_inferred(test_set: ImageData) -> None:
    ev = evaluate(ConstantModel(), test_set.x, test_set.y)
    assert len(ev.confusion) == 3
    ev = evaluate(ConstantModel(), test_set.x, test_set.y, num_classes=5)
    assert len(ev.confusion) == 5 and len(ev.confusion[0]) == 5


def test_confusion_can_be_skipped(test_set: ImageData) -> None:
    ev = evaluate(ConstantModel(), test_set.x, test_set.y, confusion=False)
    assert ev.confusion is None


@pytest.mark.parametrize("start_training", [True, False])
def test_predict_restores_mode(test_set: ImageData, start_training: bool) -> None:
    model = LookupModel(CLEAN_PRED, TRIG_PRED)
    model.train(start_training)
    predict(model, test_set.x, batch_size=2)
    assert model.training is start_training
    assert model.seen_training == [False, False, False]  # forwards always ran in eval mode
    evaluate(model, test_set.x, test_set.y, backdoor_test(test_set, _spec()))
    assert model.training is start_training


def test_predict_restores_mode_after_error(test_set: ImageData) -> None:
    class Boom(ConstantModel):
        def forward(self, x):
            raise RuntimeError("boom")

    model = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        predict(model, test_set.x)
    assert model.training


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        # ASR drop with no ACC loss: (gain + 1) / 2
        ((0.9, 0.9), (0.9, 0.1), (0.8 + 1) / 2),
        ((0.9, 1.0), (0.9, 0.0), 1.0),
        # ACC loss only: (1 - loss) / 2
        ((0.9, 0.5), (0.7, 0.5), (1 - 0.2) / 2),
        ((1.0, 0.5), (0.0, 0.5), 0.0),
        # both
        ((0.95, 1.0), (0.85, 0.2), (0.8 - 0.1 + 1) / 2),
        # clamped at 0: ASR going up and ACC going up count as no change
        ((0.8, 0.2), (0.9, 0.6), 0.5),
        ((0.8, 0.2), (0.8, 0.2), 0.5),
        # ASR up (clamped to 0) and ACC down
        ((0.8, 0.2), (0.6, 0.9), (1 - 0.2) / 2),
    ],
)
def test_der_formula(before, after, expected) -> None:
    b = {"acc": before[0], "asr": before[1]}
    a = {"acc": after[0], "asr": after[1]}
    assert der(b, a) == pytest.approx(expected)
    # Evaluation objects give the same number
    assert der(Evaluation(*before), Evaluation(*after)) == pytest.approx(expected)
    assert 0.0 <= der(b, a) <= 1.0


def test_evaluation_dict_round_trip(test_set: ImageData) -> None:
    bd = backdoor_test(test_set, _spec())
    ev = evaluate(LookupModel(CLEAN_PRED, TRIG_PRED), test_set.x, test_set.y, bd, num_classes=K)
    d = ev.to_dict()
    assert d["per_class_asr"] == {"1": 1.0, "2": 0.5}  # JSON keys are strings
    assert d["off_target"] == {"1": 0.0, "2": 0.0}
    assert Evaluation.from_dict(d) == ev
    old = {k: v for k, v in d.items() if k != "off_target"}  # written before the measure
    assert Evaluation.from_dict(old).off_target is None
    assert "confusion" not in ev.to_dict(confusion=False)
