"""Every dashboard page under Streamlit's AppTest: it draws without an exception, its widgets are
wired to the engine, and a tiny SAU run started from the Defend form goes to completion.

The live region (``st.fragment(run_every=...)``) is covered by the browser test; here the run is
awaited on disk and the page drawn again, which shows the finished view.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from sau_core.lab.presets import DEMO
from sau_core.lab.ready import make_ready
from sau_core.serving.runs import RunStore
from tests.lab import TINY

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def ready_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ready")
    make_ready(out, [DEMO.attack.name], TINY)
    return out


@pytest.fixture
def env(monkeypatch, tmp_path, ready_dir):
    monkeypatch.setenv("SAU_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("SAU_LAB_CHECKPOINTS", str(ready_dir))
    return tmp_path / "runs"


def _app(page: str | None = None, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    if page is not None:
        at.switch_page(page)
    return at.run()


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def _wait_finished(root, timeout=120.0) -> str:
    """The newest run's id once it has ended on disk and in the app's runner (a worker writes
    "finished" just before it exits; the runner's live view follows its exit)."""
    from dashboard import state

    end = time.time() + timeout
    while time.time() < end:
        runs = RunStore(root).scan()[0]
        if runs and runs[0].state not in ("queued", "running"):
            assert state._runner(str(Path(root).absolute())).wait(runs[0].id, timeout)
            return runs[0].id
        time.sleep(0.2)
    raise AssertionError("the run did not finish")


# ------------------------------------------------------------------------------------ smoke
@pytest.mark.parametrize(
    "page, title",
    [
        (None, "Set up"),
        ("app_pages/attack.py", "Attack: plant a backdoor"),
        ("app_pages/purify.py", "Defend the model"),
        ("app_pages/gallery.py", "Shared adversarial examples"),
        ("app_pages/runs.py", "Runs"),
    ],
)
def test_every_page_draws(env, page, title):
    at = _ok(_app(page))
    assert at.title[0].value == title


def test_setup_offers_the_ready_made_demo_and_every_data_set(env):
    at = _ok(_app())
    assert at.button(key="demo-ready").label == "Use the demo preset"
    datasets = at.selectbox(key="train.dataset")
    assert "digits" in datasets.options and datasets.value == "digits"
    # an unavailable data set says why, and the app keeps running
    at = _ok(datasets.set_value("cifar10").run())
    assert any("not available" in w.value for w in at.warning)


def test_setup_trigger_form_is_generated_and_validated(env):
    at = _ok(_app())
    size = at.number_input(key="attack.badnets.size")
    assert size.value == 3
    at = _ok(size.set_value(99).run())  # the bound depends on the image size (16x16 here)
    assert any("size: must be at most 16" in e.value for e in at.error)  # next to the field
    assert any("Fix these settings first" in e.value for e in at.error)  # and at the button
    train = next(b for b in at.button if b.label == "Train the backdoored model")
    assert train.disabled
    at = _ok(at.number_input(key="attack.badnets.size").set_value(3).run())
    at.selectbox(key="train.attack").set_value("sig").run()
    _ok(at)
    freq = at.number_input(key="attack.sig.freq")
    at = _ok(freq.set_value(8).run())  # 2 * 8 / 16 is an integer: the sinusoid vanishes
    assert any("do not work" in e.value for e in at.error)


def test_purify_form_says_what_is_out_of_range(env):
    at = _ok(_app())
    at = _ok(at.button(key="demo-ready").click().run())
    at = _ok(at.number_input(key="sau.digits.rounds").set_value(0).run())
    at = _ok(at.number_input(key="sau.digits.clean_ratio").set_value(1.5).run())
    errors = [e.value for e in at.error]
    assert any("rounds: must be at least 1" in e for e in errors)
    assert any("clean ratio: must be at most 1" in e for e in errors)
    assert any(e.startswith("Fix these settings first") and "rounds" in e and "clean ratio" in e
               for e in errors)  # fmt: skip
    assert at.button(key="purify.go").disabled
    assert not RunStore(env).scan()[0]  # nothing started


def test_purify_form_warns_before_a_setting_measured_to_fail(env):
    at = _ok(_app())
    at = _ok(at.button(key="demo-ready").click().run())
    assert not any("A clean set of" in w.value for w in at.warning)  # the default is fine
    at = _ok(at.number_input(key="sau.digits.clean_ratio").set_value(0.05).run())
    assert any("A clean set of 5%" in w.value and "BadNets 0.70" in w.value for w in at.warning)


def test_demo_button_chooses_the_model_and_opens_purify(env):
    at = _ok(_app())
    at = _ok(at.button(key="demo-ready").click().run())
    assert at.session_state["model"]["source"] == "ready"
    assert at.title[0].value == "Defend the model"


def test_purify_form_runs_a_tiny_sau_to_completion(env, monkeypatch):
    at = _ok(_app())
    at = _ok(at.button(key="demo-ready").click().run())
    at.number_input(key="sau.digits.rounds").set_value(1)
    at.number_input(key="sau.digits.probe_size").set_value(4)
    submit = [b for b in at.button if b.label == "Run SAU"]
    at = _ok(submit[0].click().run())
    run_id = _wait_finished(env)
    assert at.query_params["run"] == run_id  # a reload reattaches
    at = _ok(at.run())
    assert "Before and after SAU" in [h.value for h in at.subheader]
    assert at.table[0].value.shape == (3, 4)
    assert any("adversarial examples land most on class" in c.value for c in at.caption)
    # the saturation warning is read from the run's own first round, only when it applies
    assert not any("Why this run may not move" in w.value for w in at.warning)
    with monkeypatch.context() as m:
        m.setattr("sau_core.lab.caveats.SATURATION_WARNING", 0.0)
        at = _ok(at.run())
        assert any("Why this run may not move" in w.value for w in at.warning)
    # the verdict panel: the defence's own figures first, then the re-tuning test on demand
    assert "Is the backdoor gone?" in [h.value for h in at.subheader]
    verdicts = [m.value for m in [*at.success, *at.warning, *at.info] if "Verdict:" in m.value]
    assert len(verdicts) == 1
    assert any(c.value.startswith("Thresholds: ACC kept") for c in at.caption)
    (probe,) = [b for b in at.button if b.label.startswith("Run the re-tuning test")]
    at = _ok(probe.click().run(timeout=300))
    assert (env / run_id / "probe" / "probe.json").is_file()
    assert any(c.value.startswith("Re-tuning (Min et al., NeurIPS 2024)") for c in at.caption)
    assert not [b for b in at.button if b.label.startswith("Run the re-tuning test")]
    # the gallery and the run list show it
    at.switch_page("app_pages/gallery.py")
    at = _ok(at.run())
    assert any("probe images have a shared adversarial example" in m.value for m in at.markdown)
    assert "The pattern SAU found" in [h.value for h in at.subheader]
    assert any("The attack's target is class 0" in c.value for c in at.caption)
    at.switch_page("app_pages/runs.py")
    _ok(at.run())


def test_a_failing_run_shows_its_message(env, monkeypatch):
    import sau_core.serving.work as jobs

    def boom(*args, **kwargs):
        raise RuntimeError("the device went away")

    monkeypatch.setattr(jobs, "_purify", boom)
    monkeypatch.setenv("SAU_LAB_WORKERS", "thread")  # the patch lives in this process
    at = _ok(_app())
    at = _ok(at.button(key="demo-ready").click().run())
    at = _ok(at.button(key="purify.go").click().run())
    # the run fails with its message, the app keeps going
    run_id = _wait_finished(env)
    at = _ok(at.run())
    state = RunStore(env).get(run_id).status()
    assert state["state"] == "failed" and "device went away" in state["message"]
    assert any("device went away" in e.value for e in at.error)


def test_the_device_list_offers_only_what_is_here(env):
    at = _ok(_app())
    at = _ok(at.button(key="demo-ready").click().run())
    options = at.selectbox(key="sau.digits.device").options
    assert options[:2] == ["auto", "cpu"]
    assert ("cuda" in options) == torch.cuda.is_available()


def test_a_link_with_a_bad_run_id_is_refused_politely(env):
    at = _ok(_app("app_pages/purify.py", run="../../etc"))
    assert any("no valid run" in w.value for w in at.warning)
    at = _ok(_app("app_pages/attack.py", run="20250101-000000-attack-abcdef"))
    assert any("Cannot open that run" in w.value for w in at.warning)


class _Crash(BaseException):
    """Ends a worker thread the way a killed server ends its job."""


def _interrupted_run(env, monkeypatch, job, crashes) -> str:
    """``job`` run in a thread whose server "dies" at the first event ``crashes(event)`` is
    true, left owned by a process that no longer exists: an interrupted run; its id."""
    import socket
    import subprocess
    import sys

    from sau_core.serving import JobRunner
    from sau_core.serving.runs import Run

    original = Run.append_event

    def append_event(self, event, t=None):
        if crashes(event):
            raise _Crash
        return original(self, event, t)

    runner = JobRunner(RunStore(env), workers="thread")  # the patch lives in this process
    with monkeypatch.context() as m:
        m.setattr(Run, "append_event", append_event)
        run_id = runner.submit(job)
        assert runner.wait(run_id, timeout=120)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    RunStore(env).get(run_id).update_status(owner={"host": socket.gethostname(), "pid": dead.pid})
    return run_id


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_interrupted_run_resumes_from_the_purify_page(env, ready_dir, monkeypatch):
    from sau_core.defenses.sau import SAUConfig
    from sau_core.events import SAUBatch
    from sau_core.serving import PurifyJob

    sau = SAUConfig(rounds=2, batch_size=64, probe_size=4, eval_size=100)
    job = PurifyJob(str(ready_dir / "badnets"), sau, 0.1, data=TINY.data, device="cpu")
    run_id = _interrupted_run(  # the server dies in round 2
        env, monkeypatch, job, lambda e: isinstance(e, SAUBatch) and e.round == 2
    )

    at = _ok(_app("app_pages/purify.py", run=run_id))
    assert any("was interrupted" in i.value for i in at.info)
    button = at.button(key=f"resume-{run_id}")
    assert button.label == "Resume from round 1"
    _ok(button.click().run())
    assert _wait_finished(env) == run_id
    assert RunStore(env).get(run_id).status()["state"] == "finished"
    at = _ok(_app("app_pages/purify.py", run=run_id))
    assert "Before and after SAU" in [h.value for h in at.subheader]


def test_a_session_lists_only_its_own_runs_and_those_opened_by_link(env):
    """Sessions see their own runs, runs opened by link, and runs made outside any session (no
    owner: the CLI or a script, e.g. a teacher's prepared runs), never another session's."""
    a = _ok(_app("app_pages/runs.py"))
    b = _ok(_app("app_pages/runs.py"))
    owner_a, owner_b = a.session_state["owner"], b.session_state["owner"]
    assert owner_a != owner_b and len(owner_a) == 16  # random, one per session
    store = RunStore(env)
    mine = store.create("purify", {}, "alice's run", owner=owner_a).id
    theirs = store.create("purify", {}, "bob's run", owner=owner_b).id
    shared = store.create("purify", {}, "from the command line").id

    def listed(at) -> list[str]:
        return sorted(at.dataframe[0].value["run"]) if at.dataframe else []

    a = _ok(a.run())
    assert listed(a) == sorted([mine, shared])
    b = _ok(b.run())
    assert listed(b) == sorted([theirs, shared])
    assert listed(_ok(_app("app_pages/runs.py"))) == [shared]  # a third session
    # alice opens bob's shared link: from then on her session lists it too
    a.switch_page("app_pages/purify.py")
    a.query_params["run"] = theirs
    a = _ok(a.run())
    a.switch_page("app_pages/runs.py")
    a = _ok(a.run())
    assert listed(a) == sorted([mine, theirs, shared])
    assert listed(_ok(b.run())) == sorted([theirs, shared])


@pytest.mark.parametrize(
    ("page", "widget"),
    [("app_pages/compare.py", "multiselect"), ("app_pages/gallery.py", "selectbox")],
)
def test_compare_and_gallery_offer_only_visible_runs(env, page, widget):
    """Another session's SAU run is not offered; this session's and owner-less ones are."""
    at = _ok(_app(page))
    store = RunStore(env)
    runs = {
        "mine": store.create("purify", {}, "mine", owner=at.session_state["owner"]),
        "shared": store.create("purify", {}, "from the command line"),
        "other": store.create("purify", {}, "someone else's", owner="0123456789abcdef"),
    }
    for run in runs.values():
        run.update_status(state="finished")
    at = _ok(at.run())
    offered = " ".join(getattr(at, widget)[0].options)
    assert "mine" in offered and "from the command line" in offered
    assert "someone else's" not in offered and runs["other"].id[-6:] not in offered


# ---------------------------------------------------------------- your own model and trigger
def _png_bytes(array) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _bare_weights(ready_dir) -> bytes:
    """The tiny ready-made model's weights as an analyst would save them: torch.save'd state
    dict of the network alone under 'model_state_dict', DataParallel's 'module.' prefix."""
    import io

    from safetensors.torch import load_file

    state = load_file(ready_dir / "badnets" / "model.safetensors")
    buf = io.BytesIO()
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in state.items()}}, buf)
    return buf.getvalue()


def _upload_form(at, ready_dir):
    at.file_uploader(key="up.weights").upload("my_model.pt", _bare_weights(ready_dir))
    at = _ok(at.run())
    at.selectbox(key="up.arch").set_value(TINY.arch)
    at.selectbox(key="up.ds").set_value("digits")
    at = _ok(at.run())
    at.selectbox(key="up.res").set_value(8)
    return _ok(at.run())


def test_the_upload_form_measures_a_trigger_given_as_png(env, ready_dir):
    """An analyst's own model and trigger: the BadNets patch drawn as an image and a mask
    (white 3x3 at the bottom-right of 8x8), given as PNG uploads, measures the ASR that the
    registered attack gives (the manifest's), and the run carries the picture."""
    import json

    import numpy as np

    at = _upload_form(_ok(_app()), ready_dir)
    at.selectbox(key="up.attack").set_value("custom")
    at = _ok(at.run())
    assert at.button(key="up.go").disabled  # no picture yet
    assert any("the trigger image is missing" in e.value for e in at.error)
    patch = np.zeros((8, 8))
    patch[5:, 5:] = 255
    image, mask = ("t.png", _png_bytes(patch)), ("m.png", _png_bytes(patch))
    at.file_uploader(key="up.attack.custom.image_file").upload(*image)
    at.file_uploader(key="up.attack.custom.mask_file").upload(*mask)
    at = _ok(at.run())
    assert not at.button(key="up.go").disabled
    # AppTest keeps an upload for one run: give the files again with the click
    at.file_uploader(key="up.weights").upload("my_model.pt", _bare_weights(ready_dir))
    at.file_uploader(key="up.attack.custom.image_file").upload(*image)
    at.file_uploader(key="up.attack.custom.mask_file").upload(*mask)
    at = _ok(at.button(key="up.go").click().run())
    runs = RunStore(env).scan()[0]
    assert [r.kind for r in runs] == ["import"], [e.value for e in at.error]
    metrics = runs[0].metrics
    manifest = json.loads((ready_dir / "manifest.json").read_text())["checkpoints"][0]["metrics"]
    assert metrics["acc"] == pytest.approx(manifest["acc"], abs=1e-6)
    assert metrics["asr"] == pytest.approx(manifest["asr"], abs=1e-6)
    spec = RunStore(env).get(runs[0].id).config()["job"]["attack"]
    assert spec["name"] == "custom" and spec["params"]["image"].startswith("data:image/png")
    assert at.title[0].value == "Defend the model"  # on to purify it


def test_the_upload_form_takes_an_attacks_parameters(env, ready_dir):
    """A known trigger that is not the default: BadNets at another place and with another
    pattern is entered through the attack's own fields."""
    at = _upload_form(_ok(_app()), ready_dir)
    at.selectbox(key="up.attack").set_value("badnets")
    at = _ok(at.run())
    at.selectbox(key="up.attack.badnets.location").set_value("top-left")
    at.selectbox(key="up.attack.badnets.pattern").set_value("checker")
    at.number_input(key="up.target").set_value(7)
    at = _ok(at.run())
    at.file_uploader(key="up.weights").upload("my_model.pt", _bare_weights(ready_dir))
    at = _ok(at.button(key="up.go").click().run())
    spec = RunStore(env).get(RunStore(env).scan()[0][0].id).config()["job"]["attack"]
    assert spec["params"] == {"size": 3, "location": "top-left", "pattern": "checker"}
    assert spec["target"] == 7


def test_an_unreadable_upload_names_the_file_and_what_to_do(env):
    at = _ok(_app())
    at.file_uploader(key="up.weights").upload("weights_from_colab.pt", b"\x80\x02 not a torch file")
    at = _ok(at.run())
    at.selectbox(key="up.arch").set_value(TINY.arch)
    at = _ok(at.run())
    at.file_uploader(key="up.weights").upload("weights_from_colab.pt", b"\x80\x02 not a torch file")
    at = _ok(at.button(key="up.go").click().run())
    text = " ".join(e.value for e in at.error)
    assert "weights_from_colab.pt" in text and "torch.save(model.state_dict()" in text
    assert "weights_only=False" not in text
    assert not RunStore(env).scan()[0]  # nothing kept


# ----------------------------------------------------------------------- an unknown trigger
def test_an_unknown_trigger_run_says_what_it_measured(env, ready_dir):
    """A run without a trigger, opened by its link in a fresh session: no 'choose a model'
    message, ACC only, the landing evidence and the suspected target, no dashes as results."""
    from sau_core.serving import JobRunner, PurifyJob

    runner = JobRunner(RunStore(env))
    job = PurifyJob(checkpoint=str(ready_dir / "badnets"), settings=replace(DEMO.sau, rounds=2),
                    clean_ratio=0.1, data=TINY.data)  # fmt: skip
    run_id = runner.submit(job, label="unknown trigger")
    assert runner.wait(run_id, timeout=300)
    at = _ok(_app("app_pages/purify.py", run=run_id))
    assert not any("Choose a backdoored model" in i.value for i in at.info)
    assert [m.label for m in at.metric if m.label in ("ACC", "ASR", "RA")] == ["ACC"]
    assert all(m.value not in ("–", "-") for m in at.metric)
    assert [r for r in at.table[0].value["metric"]] == ["ACC"]
    evidence = " ".join(i.value for i in at.info)
    assert "Not measured: ASR, RA and per-class ASR" in evidence
    assert "Suspected target: class" in evidence
    charts = [c.value for c in at.caption]
    assert any("ASR and RA are not measured: the trigger is unknown" in c for c in charts)
    assert any("Verdict: cannot judge: the trigger is unknown" in i.value for i in at.info)
    assert not [b for b in at.button if b.label.startswith("Run the re-tuning test")]
    assert not any(c.startswith("**Per-class ASR**") for c in charts)


def test_the_target_class_is_checked_and_the_model_follows_the_data_set(env):
    at = _ok(_app())
    at = _ok(at.number_input(key="train.target").set_value(12).run())
    assert any("target class: must be at most 9" in e.value for e in at.error)
    assert next(b for b in at.button if b.label == "Train the backdoored model").disabled
    at = _ok(at.number_input(key="train.target").set_value(3).run())
    assert not any("target class" in e.value for e in at.error)
    from sau_core.lab.recipes import recipe

    at = _ok(at.selectbox(key="train.dataset").set_value("cifar10").run())
    assert at.selectbox(key="train.arch").value == recipe("cifar10").arch


# ------------------------------------------------------------- a class on one server (#16)
def _start_purify(at: AppTest, rounds: int) -> AppTest:
    at = _ok(at.button(key="demo-ready").click().run())
    at.number_input(key="sau.digits.rounds").set_value(rounds)
    at.number_input(key="sau.digits.probe_size").set_value(4)
    return _ok([b for b in at.button if b.label == "Run SAU"][0].click().run())


def test_a_link_shows_a_run_but_only_its_owner_may_stop_it(env):
    """Bob opens Alice's running job by its link: he watches it, with no Stop; Alice has Stop.
    The engine refuses Bob's stop too."""
    from dashboard import state
    from sau_core.serving.runs import RunError

    alice = _start_purify(_ok(_app()), rounds=500)
    run_id = alice.query_params["run"]
    runner = state._runner(str(Path(env).absolute()))
    assert runner.workers == "process" and runner.max_per_owner == 2
    try:
        bob = _ok(_app("app_pages/purify.py", run=run_id))
        assert not any(b.label == "Stop" for b in bob.button)
        assert any("only the session that started this run can stop it" in c.value
                   for c in bob.caption)  # fmt: skip
        assert any(b.label == "Stop" for b in _ok(alice.run()).button)
        with pytest.raises(RunError):
            runner.stop(run_id, owner=bob.session_state["owner"])
        assert runner.is_active(run_id)
    finally:
        runner.stop(run_id)
        runner.wait(run_id, timeout=120)


def test_the_url_always_carries_the_run_id(env):
    """If the write of ?run= is lost (a rerun racing it, streamlit#7961), the next run of the
    page puts it back, so a reload still finds the run."""
    at = _start_purify(_ok(_app()), rounds=1)
    run_id = _wait_finished(env)
    assert at.query_params["run"] == run_id
    del at.query_params["run"]  # as if the browser never got it
    at = _ok(at.run())
    assert at.query_params["run"] == run_id


def test_a_bad_job_setting_names_the_variable(env, monkeypatch):
    monkeypatch.setenv("SAU_LAB_MAX_WAITING", "lots")
    at = _app()
    assert any("SAU_LAB_MAX_WAITING='lots'" in e.value and "whole number" in e.value
               for e in at.error)  # fmt: skip


def test_runner_settings_from_the_environment():
    from dashboard.state import runner_settings

    assert runner_settings({}) == {"SAU_LAB_CPU_JOBS": 1, "SAU_LAB_MAX_WAITING": 2,
                                   "SAU_LAB_JOB_MINUTES": 60, "SAU_LAB_WORKERS": "process"}  # fmt: skip
    got = runner_settings({"SAU_LAB_JOB_MINUTES": "0", "SAU_LAB_CPU_JOBS": " 2 ",
                           "SAU_LAB_WORKERS": "thread"})  # fmt: skip
    assert got["SAU_LAB_JOB_MINUTES"] == 0 and got["SAU_LAB_CPU_JOBS"] == 2
    for bad in ({"SAU_LAB_CPU_JOBS": "0"}, {"SAU_LAB_MAX_WAITING": "-1"},
                {"SAU_LAB_JOB_MINUTES": "1.5"}, {"SAU_LAB_WORKERS": "fork"}):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            runner_settings(bad)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_interrupted_attack_training_resumes_from_the_attack_page(env, monkeypatch):
    from sau_core.events import TrainBatch
    from sau_core.serving import AttackJob

    job = AttackJob(TINY.data, "small_cnn", DEMO.attack, replace(TINY.train, epochs=2),
                    device="cpu")  # fmt: skip
    run_id = _interrupted_run(  # the server dies in epoch 2
        env, monkeypatch, job, lambda e: isinstance(e, TrainBatch) and e.epoch == 2
    )

    other = _ok(_app("app_pages/attack.py", run=run_id))  # a run made outside any session:
    at = _ok(_app("app_pages/attack.py", run=run_id))  # every session may resume it
    assert any("training was interrupted" in i.value for i in at.info)
    button = at.button(key=f"resume-{run_id}")
    assert button.label == "Resume from epoch 1"
    _ok(button.click().run())
    assert _wait_finished(env) == run_id
    assert RunStore(env).get(run_id).status()["state"] == "finished"
    assert "The backdoored model" in [h.value for h in _ok(other.run()).subheader]


# ----------------------------------------------------------------- defences side by side (#17)
def test_defend_offers_every_defence_with_its_own_form_and_lesson(env):
    from sau_core.defenses import DEFENSES

    at = _ok(_app())
    at = _ok(at.button(key="demo-ready").click().run())
    box = at.selectbox(key="defend.defense")
    assert box.options == [e.title for e in DEFENSES.values()] and box.value == "sau"
    at = _ok(box.set_value("fp").run())
    assert at.number_input(key="fp.digits.max_acc_drop").value == 0.1
    assert at.number_input(key="fp.digits.batch_size").value == 64  # digits' measured setting
    assert any(e.label.startswith("What FP does, and where it fails") for e in at.expander)
    assert any("Where it is known to fail" in m.value for m in at.markdown)
    assert not any("Before you run: where SAU" in w.value for w in at.warning)
    assert at.button(key="purify.go").label == "Run FP"
    # a setting out of range is named and blocks the run
    at = _ok(at.number_input(key="fp.digits.max_prune").set_value(1.5).run())
    assert any("max prune" in e.value or "max_prune" in e.value for e in at.error)
    assert at.button(key="purify.go").disabled


def test_defend_runs_a_baseline_and_shows_its_own_numbers(env):
    at = _ok(_app())
    at = _ok(at.button(key="demo-ready").click().run())
    at = _ok(at.selectbox(key="defend.defense").set_value("fp").run())
    at.number_input(key="fp.digits.rounds").set_value(2)
    at = _ok(at.button(key="purify.go").click().run())
    run_id = _wait_finished(env)
    assert RunStore(env).get(run_id).status()["state"] == "finished"
    at = _ok(at.run())
    assert "Before and after FP" in [h.value for h in at.subheader]
    assert any(c.value.startswith("Pruned: **") for c in at.caption)
    assert not any("Shared adversarial examples in the last round" in c.value for c in at.caption)
    # its report is FP's: its lesson and curves, none of SAU's own sections
    from dashboard.report import build_report

    html = build_report(RunStore(env).get(run_id), n_images=1)
    assert "Before and after FP" in html and "Fine-Pruning" in html
    assert "Shared adversarial examples" not in html and "Where the models look" in html
    # a fresh page opened on the run's link shows the run's defence
    other = _ok(_app("app_pages/purify.py", run=run_id))
    assert other.selectbox(key="defend.defense").value == "fp"
    assert "Before and after FP" in [h.value for h in other.subheader]


def test_run_every_defence_queues_what_fits_and_the_rest_as_room_frees(env):
    from dashboard import state

    at = _ok(_app())
    at = _ok(at.button(key="demo-ready").click().run())
    at = _ok(at.button(key="purify.every").click().run())
    runner = state._runner(str(Path(env).absolute()))
    try:
        runs = RunStore(env).scan()[0]
        assert 1 <= len(runs) < 6  # a session may have only a few waiting at once
        waiting = [i for i in at.info if "Waiting for room in the queue" in i.value]
        assert waiting and "ANP" in waiting[0].value and "i-BAU" in waiting[0].value
        labels = {r.label.split(" on ")[0] for r in runs}
        assert labels <= {"SAU", "FT", "FP", "NAD", "ANP", "i-BAU"}
    finally:
        for r in RunStore(env).scan()[0]:
            runner.stop(r.id)
        at.session_state["pending_jobs"] = []
    for r in RunStore(env).scan()[0]:
        assert runner.wait(r.id, timeout=120)
