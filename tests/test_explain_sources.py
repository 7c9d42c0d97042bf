"""sau_core.explain.sources (a run's two models, images to explain, upload checks), explain_grid, the
heat-map pictures, the comparison chart builders and the HTML report, without Streamlit."""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dashboard import charts
from dashboard.report import build_report, main, write_report
from sau_core.data import DatasetInfo
from sau_core.explain import compare_focus, explain_grid, sources
from sau_core.explain.pictures import heat_legend, heat_to_uint8, hstack
from sau_core.serving.runs import RunStore
from tests.lab import make_lab

GREY8 = DatasetInfo("digits", 10, (1, 8, 8), (0.5,), (0.5,))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    torch.set_num_threads(1)
    ready_dir, runs, ids = make_lab(tmp_path_factory.mktemp("lab"))
    return RunStore(runs).get(ids[0])


@pytest.fixture(scope="module")
def pair(lab):
    return sources.load_run_pair(lab)


# ---------------------------------------------------------------------------- run's models
def test_a_purify_run_gives_h0_and_h(lab, pair):
    assert pair.names == ["h0", "h"] and pair.attack is not None and pair.attack.name == "badnets"
    assert pair.info.shape == (1, 8, 8)
    assert not pair.h0.training and not pair.h.training
    # h is the purified model: SAU changed its weights
    diff = [(a - b).abs().max() for a, b in zip(pair.h0.parameters(), pair.h.parameters(),
                                                strict=True)]  # fmt: skip
    assert max(diff) > 0


def test_load_run_pair_refuses_what_is_not_a_finished_purify_run(lab, tmp_path):
    store = RunStore(tmp_path)
    queued = store.create("purify", {"checkpoint": str(lab.path)})
    with pytest.raises(ValueError, match="no purified checkpoint"):
        sources.load_run_pair(queued)
    with pytest.raises(ValueError, match="not a purify run"):
        sources.load_run_pair(store.create("attack", {}))


def test_load_model_is_a_lone_h0(lab):
    single = sources.load_model(lab.path, "h")
    assert single.h is None and single.names == ["h0"] and len(single.models) == 1


# --------------------------------------------------------------------------------- images
def test_test_versions_are_clean_and_triggered_outside_the_target(pair):
    split = pair.data.load()
    versions, y = sources.test_versions(split.test, pair.attack, 5, seed=3)
    assert list(versions) == ["clean", "triggered"] and len(y) == 5
    assert (y != pair.attack.target).all()
    assert versions["clean"].shape == versions["triggered"].shape == (5, 1, 8, 8)
    assert not torch.equal(versions["clean"], versions["triggered"])
    only, _ = sources.test_versions(split.test, None, 2)
    assert list(only) == ["clean"]
    with pytest.raises(ValueError, match="number of images"):
        sources.test_versions(split.test, None, 0)


def test_probe_versions_are_the_gallery_examples(lab):
    probe = lab.load_probe(lab.probe_rounds()[-1])
    versions, y = sources.probe_versions(probe, 3, shared_only=False)
    assert list(versions) == ["clean", "shared adversarial"] and len(y) == 3
    adv = versions["shared adversarial"]
    assert adv.min() >= 0 and adv.max() <= 1
    eps = 0.2 + 1e-5  # SAU's L_inf budget
    assert (adv - versions["clean"]).abs().max() <= eps


def _png(w, h, mode="RGB", fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), 200 if mode == "L" else (200, 10, 10)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "WEBP"])
def test_an_uploaded_picture_becomes_one_image_of_the_models_size(fmt):
    x = sources.decode_image(_png(40, 30, fmt=fmt), GREY8)
    assert x.shape == (1, 1, 8, 8) and x.dtype == torch.float32
    assert 0 <= float(x.min()) <= float(x.max()) <= 1


def test_uploads_are_checked_before_decoding():
    with pytest.raises(ValueError, match="empty"):
        sources.decode_image(b"", GREY8)
    with pytest.raises(ValueError, match="supported format"):
        sources.decode_image(b"<html>not a picture</html>", GREY8)
    with pytest.raises(ValueError, match="MiB"):
        sources.decode_image(_png(8, 8), GREY8, max_bytes=10)
    # a small file that claims many pixels (a decompression bomb) is refused before decoding
    bomb = _png(3000, 3000, mode="L")
    assert len(bomb) < 100_000
    with pytest.raises(ValueError, match="pixels"):
        sources.decode_image(bomb, GREY8, max_pixels=1000 * 1000)
    tif = io.BytesIO()
    Image.new("L", (8, 8)).save(tif, format="TIFF")
    with pytest.raises(ValueError, match="supported format"):
        sources.decode_image(tif.getvalue(), GREY8)
    with pytest.raises(ValueError, match="decoded"):
        sources.decode_image(_png(64, 64)[:80], GREY8)  # truncated


# ---------------------------------------------------------------------------- explain_grid
class _Lin(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.fc = nn.Linear(16, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(w)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_explain_grid_shares_one_scale_per_row_across_models_and_versions():
    torch.manual_seed(0)
    w = torch.randn(2, 16)
    a, b = _Lin(w), _Lin(3 * w)  # b's gradients are 3x a's
    x = torch.rand(3, 1, 4, 4)
    grid = explain_grid([a, b], {"clean": x, "twice": 2 * x}, "saliency", percentile=100.0)
    assert grid.columns == ["clean", "twice"]
    for v in range(2):
        assert torch.allclose(grid.pred[v][0], grid.pred[v][1])
        # the same gradient pattern, three times stronger, on the same scale
        assert torch.allclose(grid.maps[v][1], (3 * grid.maps[v][0]).clamp(max=1), atol=1e-5)
    top = torch.stack([m.flatten(1).amax(1) for row in grid.maps for m in row]).amax(0)
    assert torch.allclose(top, torch.ones(3))  # the row's largest mass maps to 1
    with pytest.raises(ValueError, match="same number"):
        explain_grid([a], {"p": x, "q": x[:2]})
    with pytest.raises(ValueError, match="sequence of models"):
        explain_grid(a, {"p": x})


def test_explain_grid_on_the_run_and_its_trigger_focus(pair):
    split = pair.data.load()
    versions, _ = sources.test_versions(split.test, pair.attack, 2)
    for method in ("saliency", "grad_cam", "occlusion"):
        grid = explain_grid(pair.models, versions, method)
        assert [m.shape for m in grid.maps[1]] == [(2, 8, 8)] * 2
        assert all(float(m.min()) >= 0 and float(m.max()) <= 1 for r in grid.maps for m in r)
    x = sources.focus_images(split.test, pair.attack, 16)
    focus = compare_focus(pair.h0, pair.h, x, pair.attack.trigger(pair.info), "saliency")
    rows = charts.focus_rows(focus)
    assert [r["model"] for r in rows] == ["h0 (backdoored)", "h (purified)"]
    assert rows[0]["images"] == 16


def test_heat_pictures():
    pic = heat_to_uint8(torch.tensor([[0.0, 1.0], [float("nan"), 2.0]]), scale=1)
    assert pic.shape == (2, 2, 3) and pic.dtype == np.uint8
    assert tuple(pic[0, 0]) == (0, 0, 4) and tuple(pic[0, 1]) == (252, 255, 164)
    assert tuple(pic[1, 0]) == (0, 0, 4) and tuple(pic[1, 1]) == (252, 255, 164)
    bar = heat_legend(50, 4)
    assert bar.shape == (4, 50, 3) and bar[0, 0].sum() < bar[0, -1].sum()
    assert hstack([pic, heat_to_uint8(torch.zeros(4, 4), scale=1)], gap=2).shape == (4, 8, 3)
    with pytest.raises(ValueError):
        heat_to_uint8(torch.zeros(1, 2, 2))


# ---------------------------------------------------------------------------------- charts
def test_compare_rows_and_curves():
    m = {"before": {"acc": 0.9, "asr": 1.0, "ra": 0.0}, "after": {"acc": 0.88, "asr": 0.1,
         "ra": 0.8}, "der": 0.94, "rounds_done": 2}  # fmt: skip
    rows = charts.compare_rows([("a", m), ("b", None)])
    assert rows[0]["ASR before"] == "100.0%" and rows[0]["ASR after"] == "10.0%"
    assert rows[0]["DER"] == "0.940" and rows[1]["DER"] == "–"
    rounds = [{"round": 1, "acc": 0.8, "asr": 0.5}, {"round": 2, "acc": 0.85, "asr": 0.2}]
    fig = charts.compare_curves([("a", rounds, {"acc": 0.9, "asr": 1.0}), ("b", rounds, None)])
    names = [t.name for t in fig.data]
    assert names == ["a: ACC", "a: ASR", "b: ACC", "b: ASR"]
    assert list(fig.data[0].x) == [0, 1, 2] and list(fig.data[2].x) == [1, 2]
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
    assert fig.data[1].line.dash == "dash"


# ---------------------------------------------------------------------------------- report
class _Refs(HTMLParser):
    """Every URL an HTML tag would load (src, href, srcset, data), outside script bodies."""

    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "srcset", "data", "poster", "action") and v:
                self.refs.append(v)


def test_the_report_is_self_contained(lab, tmp_path):
    config = json.loads((lab.path / "config.json").read_text())
    config["label"] = "<script>alert('x')</script> & co"  # user text must come out escaped
    (lab.path / "config.json").write_text(json.dumps(config))
    text = build_report(lab)
    parser = _Refs()
    parser.feed(text)
    external = [r for r in parser.refs if not r.startswith("data:") and not r.startswith("#")]
    assert external == [], external
    assert "<script>alert" not in text and "&lt;script&gt;alert" in text
    assert parser.tags.count("img") >= 4 + 2  # gallery tiles, saliency rows, legend
    assert text.count("Plotly.newPlot") >= 3
    # plotly.js exactly once: the basic bundle, whose major version is plotly.py's
    assert text.count("* plotly.js") == 1 and "plotly.js (basic - minified) v" in text
    assert len(text.encode()) < 1_500_000
    # the glossary's markdown is rendered, not shown raw
    body = text.split("</head>", 1)[1]
    assert "<b>ACC (clean accuracy)</b>" in body and "**" not in body
    for section in ("Before and after SAU", "Shared adversarial examples", "Trigger focus",
                    "Where the models look", "Settings"):  # fmt: skip
        assert section in text
    assert not re.search(r"<script[^>]*\ssrc=", text)
    out = write_report(lab.path, tmp_path / "r.html")
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_the_report_command(lab, tmp_path, capsys):
    assert main(["--run", str(lab.path), "--out", str(tmp_path / "x.html")]) == 0
    assert (tmp_path / "x.html").stat().st_size > 100_000
    assert main(["--run", str(tmp_path), "--out", str(tmp_path / "y.html")]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["--run", str(lab.path), "--out", "z.html", "--method", "nope"]) == 2
