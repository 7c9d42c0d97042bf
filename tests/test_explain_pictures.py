"""Pictures: enlargement, amplified perturbations, trigger previews, probe tiles (hand-sized)."""

from __future__ import annotations

import pytest
import torch

from sau_core.attacks import AttackSpec
from sau_core.data import DatasetInfo, ImageData
from sau_core.events import ProbeSnapshot
from sau_core.explain.pictures import (
    amplify,
    best_round,
    diverging,
    outline,
    probe_tiles,
    sample_images,
    to_uint8,
    trigger_pattern,
    trigger_picture,
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
    red, grey = torch.tensor([0.86, 0.15, 0.15]), torch.tensor([0.55, 0.55, 0.55])
    assert change.shape == (2, 3, 4, 4)  # colours: red where the patch brightened the image
    assert torch.allclose(change[:, :, 2:, 2:], red[None, :, None, None].expand(2, 3, 2, 2))
    assert torch.allclose(change[:, :, :2, :], grey[None, :, None, None].expand(2, 3, 2, 4))
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


RED, GREY, BLUE = (0.86, 0.15, 0.15), (0.55, 0.55, 0.55), (0.15, 0.39, 0.92)


def test_diverging_colours_a_perturbation_on_a_fixed_scale():
    d = torch.tensor([[[0.2, 0.0], [-0.2, 0.1]]])
    c = diverging(d, scale=0.2)
    assert c.shape == (3, 2, 2)
    assert c[:, 0, 0].tolist() == pytest.approx(RED) and c[:, 0, 1].tolist() == pytest.approx(GREY)
    assert c[:, 1, 0].tolist() == pytest.approx(BLUE)
    assert c[:, 1, 1].tolist() == pytest.approx(
        [(g + r) / 2 for g, r in zip(GREY, RED, strict=True)]
    )
    # a uniform +eps perturbation (the "max" start) is all red, never a blank white panel
    uniform = diverging(torch.full((1, 3, 3), 0.2), scale=0.2)
    assert torch.allclose(uniform, torch.tensor(RED)[:, None, None].expand(3, 3, 3))
    assert diverging(torch.zeros(1, 2, 2)).tolist() == diverging(torch.zeros(1, 2, 2), 1.0).tolist()
    # RGB: the channel mean
    assert diverging(torch.tensor([[[0.2]], [[0.2]], [[-0.4]]]), 0.2)[
        :, 0, 0
    ].tolist() == pytest.approx(GREY)


def test_outline_is_drawn_outside_the_region_and_on_every_side():
    img = to_uint8(torch.full((1, 4, 4), 0.5), scale=4)  # (16, 16, 3)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[2:, 2:] = True  # the bottom-right corner, at the border
    out = outline(img, mask, color=(255, 140, 0), width=2)
    assert out.shape == (20, 20, 3)  # a 2-pixel margin on each side
    inner = out[2:-2, 2:-2]
    assert (inner[8:, 8:] == 128).all()  # the region itself is untouched
    orange = (out == [255, 140, 0]).all(-1)
    assert orange[18:20, 10:18].all() and orange[10:18, 18:20].all()  # below and right of it
    assert orange[8:10, 10:18].all() and orange[10:18, 8:10].all()  # above and left of it
    assert not orange[:6, :6].any()  # nowhere else


def test_trigger_picture_contrasts_with_the_trigger():
    info = DatasetInfo("toy", 3, (1, 8, 8), (0.5,), (0.5,), natural=False)
    white = trigger_picture(AttackSpec("badnets", {"size": 2}), info, target=8)
    black = trigger_picture(AttackSpec("badnets", {"size": 2, "pattern": "black"}), info, target=8)
    # 8x8 at 1x plus a 3-pixel margin: the canvas is dark behind a white patch, light behind a black one
    assert white[3 + 1, 3 + 1, 0] < 64 and black[3 + 1, 3 + 1, 0] > 192
    assert white[3 + 7, 3 + 7].tolist() == [255, 255, 255]  # the patch itself
    assert (white == [255, 140, 0]).all(-1).sum() > 0


def test_the_gallery_opens_on_the_round_with_most_shared_examples():
    assert best_round({0: 16, 1: 5, 2: 9, 3: 9, 4: 0}) == 2  # not round 0 (h is h0), earliest tie
    assert best_round({0: 3}) == 0
    assert best_round({1: 0, 2: 0}) == 1
