"""The Explain and Compare pages and the report buttons under Streamlit's AppTest, on a tiny lab
(one-epoch 8x8 BadNets checkpoint, two finished SAU runs of one and two rounds)."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from sau_core.explain import METHODS
from tests.lab import make_lab

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    torch.set_num_threads(1)
    return make_lab(tmp_path_factory.mktemp("lab"), rounds=(1, 2))


@pytest.fixture
def env(monkeypatch, lab):
    ready_dir, runs, ids = lab
    monkeypatch.setenv("SAU_LAB_RUNS", str(runs))
    monkeypatch.setenv("SAU_LAB_CHECKPOINTS", str(ready_dir))
    return ids


def _app(page: str, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    for k, v in query.items():
        at.query_params[k] = v
    at.switch_page(page)
    return at.run()


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_explain_shows_h0_and_h_on_clean_and_triggered_images(env):
    at = _ok(_app("app_pages/explain.py", run=env[0]))
    assert at.title[0].value == "Explain: where do the models look?"
    assert at.selectbox(key="explain.run").value == env[0]  # the URL's run
    assert "Saliency" in at.subheader[0].value
    assert [m.value for m in at.markdown if m.value in ("**clean**", "**triggered**")] == [
        "**clean**", "**triggered**"]  # fmt: skip
    # the trigger focus, in numbers and in words
    focus = {m.label: m.value for m in at.metric}
    assert {"h0 (backdoored)", "h (purified)"} <= set(focus)
    assert all(0 <= float(focus[k]) <= 1 for k in ("h0 (backdoored)", "h (purified)"))
    assert all("Spread over the images" in m.help for m in at.metric if m.label.startswith("h"))
    assert any("After SAU, h puts" in m.value for m in at.markdown)
    # every method: one table row per method and model
    at = _ok(at.checkbox(key="explain.focus_all").check().run())
    table = at.dataframe[0].value
    assert len(table) == 2 * len(METHODS) and set(table["model"]) == {
        "h0 (backdoored)",
        "h (purified)",
    }


@pytest.mark.parametrize("method", ["integrated_gradients", "grad_cam", "occlusion"])
def test_every_method_draws_with_its_generated_form(env, method):
    at = _ok(_app("app_pages/explain.py"))
    at = _ok(at.selectbox(key="explain.method").set_value(method).run())
    assert method.split("_")[0] in at.subheader[0].value.lower().replace("-", "_")


def test_bad_method_settings_give_a_clear_message(env):
    at = _ok(_app("app_pages/explain.py"))
    at = _ok(at.selectbox(key="explain.method").set_value("grad_cam").run())
    at = at.text_input(key="explain.grad_cam.layer").set_value("no.such.layer").run()
    assert not at.exception
    assert any("no layer" in e.value for e in at.error)


def test_explain_the_gallery_examples_and_a_single_model(env):
    at = _ok(_app("app_pages/explain.py"))
    at = _ok(
        at.radio(key="explain.source").set_value("Shared adversarial examples (gallery)").run()
    )
    assert any(m.value == "**shared adversarial**" for m in at.markdown)
    at = _ok(at.radio(key="explain.kind").set_value("A single model").run())
    assert any("h0" in m.value for m in at.markdown)
    assert not any(m.value == "*h*" for m in at.markdown)


def test_an_upload_is_validated(env):
    at = _ok(_app("app_pages/explain.py"))
    at = _ok(at.radio(key="explain.source").set_value("Upload an image").run())
    assert any("Upload a picture" in i.value for i in at.info)
    # AppTest cannot drive st.file_uploader; the decoding and its checks are tested in
    # tests/test_explain_sources.py, and the page's path through them here:
    from sau_core.data import DatasetInfo
    from sau_core.explain.sources import decode_image

    buf = io.BytesIO()
    Image.new("RGB", (20, 20)).save(buf, format="PNG")
    assert decode_image(buf.getvalue(), DatasetInfo("d", 10, (1, 8, 8), (0.5,), (0.5,))).shape[
        1:] == (1, 8, 8)  # fmt: skip


def test_compare_sets_the_defences_on_one_model_side_by_side(env):
    at = _ok(_app("app_pages/compare.py"))
    assert at.title[0].value == "Compare defences"
    assert at.toggle(key="compare.by_model").value  # both runs are on the same model
    assert sorted(at.multiselect(key="compare.runs.True").value) == sorted(env)
    table = at.dataframe[0].value
    assert {"ACC", "ASR", "RA", "largest pull", "DER", "seconds", "rounds"} <= set(table.columns)
    assert table["run"].tolist()[0] == "backdoored model" and len(table) == 3
    assert table["defence"].tolist() == ["none (backdoored)", "sau", "sau"]
    assert sorted(table["rounds"].tolist()[1:]) == ["1", "2"]
    at = _ok(at.multiselect(key="compare.runs.True").set_value([env[1]]).run())
    assert len(at.dataframe[0].value) == 2
    # any runs, not only one model's
    at = _ok(at.toggle(key="compare.by_model").set_value(False).run())
    assert len(at.multiselect(key="compare.runs.False").value) == 2


def test_report_buttons_on_purify_and_runs(env):
    at = _ok(_app("app_pages/purify.py", run=env[0]))
    labels = [b.label for b in at.get("download_button")]
    assert "Report (HTML)" in labels


@pytest.mark.parametrize(("pull", "noted"), [(0.7, True), (0.05, False)])
def test_purify_and_report_say_when_the_trigger_steers_elsewhere(env, lab, pull, noted):
    """A purified model whose trigger now sends images to another class (the demo's BadNets
    model: 70% of them to class 1) gets a note under the before/after table and in the report;
    the run's own metrics.json is put back afterwards."""
    import json

    from dashboard.report import build_report
    from sau_core.serving.runs import RunStore

    run = RunStore(lab[1]).get(env[0])
    path = run.path / "metrics.json"
    original = path.read_text()
    metrics = json.loads(original)
    assert set(metrics["after"]["off_target"]) == {str(c) for c in range(1, 10)}  # real runs
    metrics["after"]["off_target"] = {"1": 0.0, "2": pull}
    try:
        path.write_text(json.dumps(metrics))
        at = _ok(_app("app_pages/purify.py", run=env[0]))
        notes = [w.value for w in at.warning if "Low ASR is not the whole story" in w.value]
        assert len(notes) == noted
        if noted:
            assert "towards class 2" in notes[0] and "70%" in notes[0]
        report = build_report(run)
        assert ("The trigger still steers the purified model" in report) is noted
        # the verdict panel reads the same figure, on the page and in the report
        redirected = "sends images to class 2 instead: redirected, not removed"
        assert "Is the backdoor gone?" in report and (redirected in report) is noted
        readings = [r for t in at.table for r in t.value.get("reading", [])]
        assert any(redirected in r for r in readings) is noted
    finally:
        path.write_text(original)


# ------------------------------------------------------------------- presets and the URL
def test_share_parses_and_writes_the_setup_query():
    from dashboard import share

    values, problems = share.parse_setup_query({"preset": "sig", "target": "3", "run": "x"})
    assert problems == []
    assert values["train.attack"] == "sig" and values["train.target"] == 3
    assert values["setup.preset"] == "sig" and values["train.resolution"] == 16
    values, problems = share.parse_setup_query({
        "preset": "nope", "dataset": "../etc", "res": "12", "arch": "x" * 500, "attack": "",
        "target": "-1", "ratio": "nan", "rule": "all2none"})  # fmt: skip
    assert values == {} and len(problems) == 8
    assert any("too long" in p for p in problems) and any("poison ratio" in p for p in problems)
    query = share.setup_query(share.preset_values("wanet"), "wanet")
    assert query["preset"] == "wanet" and query["attack"] == "wanet" and query["ratio"] == "0.1"
    assert share.parse_setup_query(query) == (
        {"setup.preset": "wanet", **share.preset_values("wanet")}, [])  # fmt: skip


def test_a_preset_fills_the_form_and_the_url(env):
    at = _ok(_app("app_pages/setup.py"))
    assert at.selectbox(key="setup.preset").value == "badnets"
    at = _ok(at.selectbox(key="setup.preset").set_value("sig").run())
    assert at.selectbox(key="train.attack").value == "sig"
    assert at.query_params["preset"] == "sig" and at.query_params["attack"] == "sig"
    # changing a field keeps it in the URL and drops the preset (the form is no longer it)
    at = _ok(at.number_input(key="train.target").set_value(4).run())
    assert at.query_params["target"] == "4" and "preset" not in at.query_params


def test_a_link_reproduces_the_setup_and_bad_params_are_reported(env):
    at = _ok(_app("app_pages/setup.py", preset="wanet", res="32", target="7"))
    assert at.selectbox(key="train.attack").value == "wanet"
    assert at.select_slider(key="train.resolution").value == 32
    assert at.number_input(key="train.target").value == 7
    at = _app("app_pages/setup.py", attack="nope", ratio="7", target="abc")
    assert not at.exception
    texts = [w.value for w in at.warning]
    assert sum("ignored" in t for t in texts) == 3
    assert at.selectbox(key="train.attack").value == "badnets"  # the default stays


@pytest.mark.parametrize(
    ("preset", "arch"),
    [
        ("blended", "wide_cnn"),
        ("blended_small", "small_cnn"),
        ("blended_resnet", "preact_resnet10"),
    ],
)
def test_a_preset_link_sets_the_model_too(env, preset, arch):
    at = _ok(_app("app_pages/setup.py", preset=preset))
    assert at.selectbox(key="train.arch").value == arch
    assert at.selectbox(key="train.attack").value == "blended"


def test_a_preset_on_another_model_trains_instead_of_taking_the_ready_made_one(env, monkeypatch):
    """The lab's ready-made BadNets model is a wide_cnn: a BadNets preset on preact_resnet10
    must train its own model, not hand out that one."""
    from dashboard import state
    from sau_core.lab.presets import DEMO, TEACHING_PRESETS, TeachingPreset
    from sau_core.serving import QueueFull

    wide = TeachingPreset("wide BadNets", "test", replace(DEMO, arch="preact_resnet10"))
    monkeypatch.setitem(TEACHING_PRESETS, "wide", wide)
    submitted = []

    def submit(job, title):
        submitted.append(job)
        raise QueueFull("queue full (test)")

    monkeypatch.setattr(state, "submit", submit)
    at = _ok(_app("app_pages/setup.py"))
    at = _ok(at.selectbox(key="setup.preset").set_value("wide").run())
    at = at.button(key="preset.use").click().run()
    assert not at.exception
    assert [(j.arch, j.attack.name) for j in submitted] == [("preact_resnet10", "badnets")]
    assert "queue full (test)" in [e.value for e in at.error]
    assert "model" not in at.session_state or at.session_state["model"] is None


def test_use_this_preset_takes_the_ready_made_model(env):
    at = _ok(_app("app_pages/setup.py"))
    at = _ok(at.button(key="preset.use").click().run())
    assert at.session_state["model"]["source"] == "ready"
    assert at.title[0].value == "Defend the model"
