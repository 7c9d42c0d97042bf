"""Tests for ``sau_core.train``: on-device augmentation, the training loop, its events and stop flag.

Training runs ``small_cnn`` on scikit-learn's digits at 8x8 (no network), on the CPU, with a few
epochs or a few hundred images, so the whole file takes seconds.
Grouped kornia-style: smoke, exception, cardinality, feature.
"""

from __future__ import annotations

import math
import threading

import pytest
import torch
import torch.nn.functional as F

from sau_core.data import ImageData, Split, load_digits
from sau_core.events import Finished, Started, TrainBatch, TrainEpoch
from sau_core.models import create_model
from sau_core.train import TrainConfig, augment, default_train_config, train

FAST = {"batch_size": 64, "lr": 0.05}


@pytest.fixture(scope="module")
def digits() -> Split:
    return load_digits(resolution=8)


@pytest.fixture(scope="module")
def small(digits: Split) -> ImageData:
    """The first 320 training images: 5 batches of 64."""
    return digits.train.subset(torch.arange(320))


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _hand_image(h: int = 8, w: int = 8) -> torch.Tensor:
    """(1, 1, h, w) with distinct non-zero values, so every shift is recognisable."""
    return (torch.arange(1, h * w + 1, dtype=torch.float32) / (h * w)).view(1, 1, h, w)


def _shifts(x: torch.Tensor, pad: int = 4) -> list[torch.Tensor]:
    """Every zero-padded shift of ``x`` by at most ``pad`` pixels in each direction."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad))
    return [
        padded[..., dy : dy + h, dx : dx + w]
        for dy in range(2 * pad + 1)
        for dx in range(2 * pad + 1)
    ]


# ------------------------------------------------------------------------------------- smoke
@pytest.mark.parametrize("mode", ["none", "crop", "crop_flip"])
def test_augment_keeps_shape_dtype_range(mode: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(7, 3, 12, 10, generator=g)
    out = augment(x, mode, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_train_smoke(small: ImageData) -> None:
    model = create_model("small_cnn", small.info, seed=0)
    res = train(model, small, TrainConfig(epochs=1, **FAST), device="cpu")
    assert res.model is model and not res.stopped
    assert len(res.history) == 1 and res.final is None
    assert not model.training  # left in eval mode
    assert res.images_per_s > 0 and res.elapsed > 0


# --------------------------------------------------------------------------------- exception
@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": 0},
        {"optimizer": "rmsprop"},
        {"batch_size": 0},
        {"lr": -0.1},
        {"schedule": "step"},
        {"augment": "rotate"},
        {"momentum": 1.5},
        {"crop_pad": -1},
    ],
)
def test_bad_config(small: ImageData, bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        TrainConfig(**bad).validate()
    with pytest.raises(ValueError):
        default_train_config("digits", **bad)
    model = create_model("small_cnn", small.info, seed=0)
    before = _weights(model)
    with pytest.raises(ValueError):
        train(model, small, TrainConfig(**bad), device="cpu")
    assert _same(before, _weights(model))


def test_unknown_config_field() -> None:
    with pytest.raises(TypeError):
        default_train_config("digits", epoch=3)


# ------------------------------------------------------------------------------- cardinality
def test_events_in_order(small: ImageData, digits: Split) -> None:
    events: list = []
    model = create_model("small_cnn", small.info, seed=0)
    config = TrainConfig(epochs=3, **FAST)
    res = train(
        model,
        small,
        config,
        device="cpu",
        eval_set=(digits.test.x[:100], digits.test.y[:100]),
        callback=events.append,
    )
    steps = math.ceil(320 / 64) * 3
    assert isinstance(events[0], Started) and events[0].job == "train"
    assert events[0].total_steps == steps
    assert isinstance(events[-1], Finished) and events[-1].stopped is False
    assert events[-1].final is not None and events[-1].final.acc == res.final.acc
    assert sum(isinstance(e, (Started, Finished)) for e in events) == 2
    batches = [e for e in events if isinstance(e, TrainBatch)]
    assert [b.step for b in batches] == list(range(1, steps + 1))
    assert all(b.total_steps == steps for b in batches)
    epochs = [e for e in events if isinstance(e, TrainEpoch)]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert all(e.epochs == 3 and e.acc is not None for e in epochs)
    assert res.history == epochs
    # every TrainEpoch comes after its own batches and before the next epoch's
    for e in epochs:
        i = events.index(e)
        assert all(b.epoch <= e.epoch for b in events[:i] if isinstance(b, TrainBatch))
        assert all(b.epoch > e.epoch for b in events[i:] if isinstance(b, TrainBatch))
    # the cosine schedule ends near 0
    assert batches[-1].lr < batches[0].lr


def test_eval_every_zero_evaluates_only_at_the_end(small: ImageData, digits: Split) -> None:
    model = create_model("small_cnn", small.info, seed=0)
    res = train(
        model,
        small.subset(torch.arange(64)),
        TrainConfig(epochs=2, eval_every=0, **FAST),
        device="cpu",
        eval_set=(digits.test.x[:50], digits.test.y[:50]),
    )
    assert [e.acc is None for e in res.history] == [True, False]
    assert res.final is not None and res.final.n_clean == 50


# ----------------------------------------------------------------------------------- feature
def test_augment_none_is_identity() -> None:
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(augment(x, "none", torch.Generator().manual_seed(0)), x)


def test_crop_is_a_zero_padded_shift() -> None:
    x = _hand_image()
    batch = x.expand(32, -1, -1, -1).clone()
    out = augment(batch, "crop", torch.Generator().manual_seed(0))
    candidates = _shifts(x)
    found = set()
    for o in out:
        matches = [i for i, c in enumerate(candidates) if torch.equal(o, c[0])]
        assert len(matches) == 1, "an output is not a zero-padded shift by <= 4 px"
        found.add(matches[0])
    assert len(found) > 1  # the shifts are random, not all the same
    assert torch.equal(batch, x.expand(32, -1, -1, -1))  # input untouched


def test_crop_shift_by_hand() -> None:
    """pad=1 on a 2x2 image: each output is one of the 9 shifts, written out by hand."""
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    allowed = [
        [[0, 0], [0, 1]], [[0, 0], [1, 2]], [[0, 0], [2, 0]],
        [[0, 1], [0, 3]], [[1, 2], [3, 4]], [[2, 0], [4, 0]],
        [[0, 3], [0, 0]], [[3, 4], [0, 0]], [[4, 0], [0, 0]],
    ]  # fmt: skip
    out = augment(x.expand(40, -1, -1, -1), "crop", torch.Generator().manual_seed(3), pad=1)
    seen = {str(o[0].int().tolist()) for o in out}
    assert seen <= {str(a) for a in allowed}
    assert len(seen) >= 5


def test_crop_flip_flips() -> None:
    x = _hand_image()
    batch = x.expand(64, -1, -1, -1)
    # pad=0: no room to shift, so each output is the image or its mirror
    out = augment(batch, "crop_flip", torch.Generator().manual_seed(0), pad=0)
    flipped = [torch.equal(o, x[0].flip(-1)) for o in out]
    kept = [torch.equal(o, x[0]) for o in out]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)
    # with padding each output is a shift of the image or of its mirror
    out = augment(batch, "crop_flip", torch.Generator().manual_seed(1))
    candidates = _shifts(x) + _shifts(x.flip(-1))
    assert all(any(torch.equal(o, c[0]) for c in candidates) for o in out)


def test_augment_repeatable() -> None:
    x = torch.rand(16, 3, 8, 8)
    a = augment(x, "crop_flip", torch.Generator().manual_seed(5))
    b = augment(x, "crop_flip", torch.Generator().manual_seed(5))
    c = augment(x, "crop_flip", torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_training_learns_digits(digits: Split) -> None:
    model = create_model("small_cnn", digits.info, seed=0)
    res = train(
        model,
        digits.train,
        TrainConfig(epochs=3, **FAST),
        device="cpu",
        eval_set=(digits.test.x, digits.test.y),
    )
    assert res.final is not None
    assert res.final.acc > 0.8  # chance is 0.1
    assert res.final.n_clean == len(digits.test)
    assert len(res.final.confusion) == 10
    assert res.history[-1].loss < res.history[0].loss


def test_same_seed_repeatable_other_seed_differs(small: ImageData) -> None:
    def run(seed: int) -> dict[str, torch.Tensor]:
        model = create_model("small_cnn", small.info, seed=0)
        train(
            model,
            small,
            TrainConfig(epochs=1, seed=seed, augment="crop_flip", **FAST),
            device="cpu",
        )
        return _weights(model)

    a, b, c = run(0), run(0), run(1)
    assert _same(a, b)
    assert not _same(a, c)


def test_stop_flag_stops_within_one_batch(small: ImageData) -> None:
    stop = threading.Event()
    events: list = []

    def callback(event) -> None:
        events.append(event)
        if isinstance(event, TrainBatch) and event.step == 3:
            stop.set()

    model = create_model("small_cnn", small.info, seed=0)
    res = train(
        model, small, TrainConfig(epochs=2, **FAST), device="cpu", callback=callback, stop=stop
    )
    assert sum(isinstance(e, TrainBatch) for e in events) == 3
    assert res.stopped is True
    assert res.history == []  # stopped inside epoch 1, which never completed
    assert isinstance(events[-1], Finished) and events[-1].stopped is True
    # the model is usable
    assert not model.training
    with torch.no_grad():
        out = model(small.x[:4])
    assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_stop_flag_set_before_start(small: ImageData) -> None:
    stop = threading.Event()
    stop.set()
    model = create_model("small_cnn", small.info, seed=0)
    before = _weights(model)
    res = train(model, small, TrainConfig(epochs=1, **FAST), device="cpu", stop=stop)
    assert res.stopped and res.history == []
    assert _same(before, _weights(model))


@pytest.mark.parametrize("mode", ["none", "crop_flip"])
def test_input_data_not_modified(small: ImageData, mode: str) -> None:
    x, y = small.x.clone(), small.y.clone()
    model = create_model("small_cnn", small.info, seed=0)
    train(model, small, TrainConfig(epochs=1, augment=mode, **FAST), device="cpu")
    assert torch.equal(small.x, x) and torch.equal(small.y, y)


def test_default_train_config() -> None:
    cfg = default_train_config("digits")
    assert (cfg.epochs, cfg.batch_size, cfg.lr) == (30, 64, 0.05)
    assert default_train_config("digits", epochs=2).epochs == 2
    assert default_train_config("unknown-data-set") == TrainConfig()
    assert TrainConfig().to_dict()["optimizer"] == "sgd"


def test_adam_and_constant_schedule(small: ImageData) -> None:
    events: list = []
    model = create_model("small_cnn", small.info, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=64, lr=1e-3, optimizer="adam", schedule="constant")
    train(model, small, cfg, device="cpu", callback=events.append)
    lrs = {e.lr for e in events if isinstance(e, TrainBatch)}
    assert lrs == {1e-3}


@pytest.mark.parametrize(
    ("resolution", "crop_pad", "expected"), [(8, 0, 1), (16, 0, 2), (32, 0, 4), (16, 3, 3)]
)
def test_crop_padding_follows_the_image_side(
    monkeypatch: pytest.MonkeyPatch, resolution: int, crop_pad: int, expected: int
) -> None:
    """crop_pad 0 pads an eighth of the side (CIFAR-10's 4 px at 32x32); a set value is used."""
    import sau_core.train as train_module

    pads: list[int] = []
    real = train_module.augment

    def spy(x, mode, generator, pad=4):
        pads.append(pad)
        return real(x, mode, generator, pad)

    monkeypatch.setattr(train_module, "augment", spy)
    data = load_digits(resolution=resolution).train.subset(torch.arange(64))
    cfg = TrainConfig(epochs=1, batch_size=32, augment="crop", crop_pad=crop_pad, eval_every=0)
    train(create_model("small_cnn", data.info, seed=0), data, cfg, device="cpu")
    assert pads == [expected, expected]


def test_label_smoothing_keeps_the_softmax_off_one(small: ImageData) -> None:
    """Smoothing 0.3 puts the loss's optimum at p = 0.73 on the label; plain CE pushes on to 1."""
    top = {}
    for ls in (0.0, 0.3):
        model = create_model("small_cnn", small.info, seed=0)
        train(model, small, TrainConfig(epochs=15, label_smoothing=ls, **FAST), device="cpu")
        with torch.no_grad():
            top[ls] = float(model(small.x).softmax(1).max(1).values.mean())
    assert top[0.0] > 0.95 and top[0.3] < 0.85, top


def test_label_smoothing_is_validated() -> None:
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(label_smoothing=0.6).validate()


def test_a_loss_that_turns_non_finite_fails_the_run(small: ImageData) -> None:
    """NaN pixels make the loss NaN: training stops with a clear error, never 'finished'."""
    from sau_core.events import NonFiniteLoss

    x = small.x.clone()
    x[0] = float("nan")
    bad = ImageData(x, small.y, small.info)
    model = create_model("small_cnn", small.info, seed=0)
    with pytest.raises(NonFiniteLoss, match="training loss is not finite in epoch 1"):
        train(model, bad, default_train_config("digits", epochs=2, augment="none"), device="cpu")
