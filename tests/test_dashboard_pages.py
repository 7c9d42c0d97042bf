"""Every dashboard page under Streamlit's AppTest: it draws without an exception, its widgets are
wired to the engine, and a tiny SAU run started from the Purify form goes to completion.

The live region (``st.fragment(run_every=...)``) is covered by the browser test; here the run is
awaited on disk and the page drawn again, which shows the finished view.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from sau_core.pipeline import DEMO
from sau_core.ready import make_ready
from sau_core.runs import RunStore
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
    end = time.time() + timeout
    while time.time() < end:
        runs = RunStore(root).scan()[0]
        if runs and runs[0].state not in ("queued", "running"):
            return runs[0].id
        time.sleep(0.2)
    raise AssertionError("the run did not finish")


# ------------------------------------------------------------------------------------ smoke
@pytest.mark.parametrize(
    "page, title",
    [
        (None, "Set up"),
        ("app_pages/attack.py", "Attack: plant a backdoor"),
        ("app_pages/purify.py", "Purify with SAU"),
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
    assert at.title[0].value == "Purify with SAU"


def test_purify_form_runs_a_tiny_sau_to_completion(env, monkeypatch):
    at = _ok(_app())
    at = _ok(at.button(key="demo-ready").click().run())
    at.number_input(key="sau.digits.rounds").set_value(1)
    at.number_input(key="sau.digits.probe_size").set_value(4)
    submit = [b for b in at.button if b.label == "Purify"]
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
        m.setattr("sau_core.pipeline.SATURATION_WARNING", 0.0)
        at = _ok(at.run())
        assert any("Why this run may not move" in w.value for w in at.warning)
    # the gallery and the run list show it
    at.switch_page("app_pages/gallery.py")
    at = _ok(at.run())
    assert any("probe images have a shared adversarial example" in m.value for m in at.markdown)
    at.switch_page("app_pages/runs.py")
    _ok(at.run())


def test_a_failing_run_shows_its_message(env, monkeypatch):
    import sau_core.jobs as jobs

    def boom(*args, **kwargs):
        raise RuntimeError("the device went away")

    monkeypatch.setattr(jobs, "_purify", boom)
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


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_interrupted_run_resumes_from_the_purify_page(env, ready_dir, monkeypatch):
    import socket
    import subprocess
    import sys

    from sau_core.events import SAUBatch
    from sau_core.jobs import JobRunner, PurifyJob
    from sau_core.runs import Run
    from sau_core.sau import SAUConfig

    original = Run.append_event

    def append_event(self, event, t=None):  # the server dies in round 2
        if isinstance(event, SAUBatch) and event.round == 2:
            raise _Crash
        return original(self, event, t)

    sau = SAUConfig(rounds=2, batch_size=64, probe_size=4, eval_size=100)
    job = PurifyJob(str(ready_dir / "badnets"), sau, 0.1, data=TINY.data, device="cpu")
    runner = JobRunner(RunStore(env))
    with monkeypatch.context() as m:
        m.setattr(Run, "append_event", append_event)
        run_id = runner.submit(job)
        assert runner.wait(run_id, timeout=120)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    RunStore(env).get(run_id).update_status(owner={"host": socket.gethostname(), "pid": dead.pid})

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
