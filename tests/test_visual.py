"""Pictures: enlargement, amplified perturbations, trigger previews, probe tiles (hand-sized)."""

from __future__ import annotations

import pytest
import torch

from sau_core.attacks import AttackSpec
from sau_core.data import DatasetInfo, ImageData
from sau_core.events import ProbeSnapshot
from sau_core.visual import (
    amplify,
    probe_tiles,
    sample_images,
    to_uint8,
    trigger_pattern,
    trigger_preview,
)

INFO = DatasetInfo("toy", 3, (1, 4, 4), (0.5,), (0.5,), natural=False)


def test_to_uint8_enlarges_with_sharp_pixels():
    img = torch.tensor([[[0.0, 1.0], [0.5, 0.25]]])  # (1, 2, 2)
    out = to_uint8(img, scale=3)
    assert out.shape == (6, 6, 3) and out.dtype.name == "uint8"
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 5].tolist() == [255, 255, 255]
    assert out[5, 0, 0] == 128 and out[5, 5, 0] == 64
    assert to_uint8(img).shape == (96, 96, 3)  # default: as large as fits 96 pixels
    with pytest.raises(ValueError, match="one image"):
        to_uint8(img[None])


def test_amplify_maps_the_largest_change_to_black_and_white():
    d = torch.tensor([[[0.0, 0.1], [-0.2, 0.2]]])
    assert amplify(d).tolist() == [[[0.5, 0.75], [0.0, 1.0]]]
    assert amplify(torch.zeros(1, 2, 2)).unique().tolist() == [0.5]


def test_trigger_preview_and_pattern_show_the_badnets_patch():
    x = torch.zeros(2, 1, 4, 4)
    xt, change = trigger_preview(x, INFO, "badnets", {"size": 2})
    assert xt[:, :, 2:, 2:].eq(1).all() and xt[:, :, :2, :].eq(0).all()
    assert change[:, :, 2:, 2:].eq(1).all() and change[:, :, :2, :].eq(0.5).all()
    assert torch.equal(x, torch.zeros(2, 1, 4, 4))  # input untouched
    pic = trigger_pattern(AttackSpec("badnets", {"size": 2}), INFO)
    assert pic[:, 2:, 2:].eq(1).all() and pic[:, :2, :].eq(0.5).all()
    with pytest.raises(ValueError, match="size"):
        trigger_preview(x, INFO, "badnets", {"size": 5})


def test_sample_images_covers_the_classes_first():
    y = torch.tensor([0, 0, 0, 0, 1, 2])
    data = ImageData(torch.rand(6, 1, 4, 4), y, INFO)
    _, ys = sample_images(data, 3)
    assert sorted(ys.tolist()) == [0, 1, 2]
    assert len(sample_images(data, 10)[1]) == 6


def test_probe_tiles_carry_labels_and_flags():
    p = ProbeSnapshot(
        round=2, x=torch.full((2, 1, 4, 4), 0.9), delta=torch.full((2, 1, 4, 4), 0.2),
        y=torch.tensor([3, 4]), pred_h0_clean=torch.tensor([3, 0]), pred_h_clean=torch.tensor([3, 4]),
        pred_h0_adv=torch.tensor([0, 0]), pred_h_adv=torch.tensor([0, 4]),
        adv_h=torch.tensor([True, False]), adv_h0=torch.tensor([True, False]),
        common=torch.tensor([True, False]), shared=torch.tensor([True, False]),
    )  # fmt: skip
    a, b = probe_tiles(p)
    assert (a.y, a.h0, a.h, a.shared, a.common) == (3, 0, 0, True, True)
    assert (b.h0_clean, b.h, b.shared) == (0, 4, False)
    assert a.adversarial.max() == 1.0  # 0.9 + 0.2, clipped for display
    assert a.linf == pytest.approx(0.2)
