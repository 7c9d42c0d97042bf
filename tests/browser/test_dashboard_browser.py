"""End to end in a real browser: ``streamlit run dashboard/app.py`` driven by headless chromium.

Goes through the demo as a user would: load the preset, purify with two rounds, watch the live
page, reload (the run's URL reattaches, the browser's cookie keeps the session's runs), open
the gallery and the per-class ASR chart, train a one-epoch backdoor, upload a model with a
trigger drawn as a PNG, list the runs, explain the SAU run and compare it. Every page is then
drawn at 1400 and at 1024 px (a classroom projector) and checked for clipped text; a screenshot
of each is saved under ``$SAU_SCREENSHOTS`` (default ``tests/browser/screenshots/``, ignored by
git). The app must make no request outside the machine. Finally the run's HTML report is opened
from disk with the network refused. Last, two fresh browsers: one starts a long purify, the
other opens its link and is offered no Stop.

Timeouts are sized for a busy 2-core machine: the first page of a cold server included.

Needs Debian's chromium at /usr/bin/chromium (``.ci/run`` installs it); Playwright's own browser
download is not used.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from tests.browser.server import CHROMIUM, launch_browser, screenshot, streamlit_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM}"),
]

SHOTS = Path(os.environ.get("SAU_SCREENSHOTS") or Path(__file__).parent / "screenshots")
LONG = 240_000  # ms: a job on a shared, busy 2-core machine
PAGE = 120_000  # ms: any page, the first one of a cold server included
WIDTHS = (1400, 1024)
DRAWN = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
# Text that does not fit its box: a metric value, a button's label, a title or a tab.
CLIPPED = """() => Array.from(document.querySelectorAll(
    "[data-testid='stMetricValue'] div, [data-testid='stMetricLabel'] p, button p, h1, h2, h3,"
    + " [data-testid='stPageLink'] p, [role='tab'] p"))
  .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 2)
  .map(e => e.textContent.trim().slice(0, 60))"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="module")
def server(workdir):
    with streamlit_server(workdir) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with launch_browser() as browser:
        yield browser


@pytest.fixture(scope="module")
def context(browser, server):
    """One browser profile (its cookies are the session's), recording every request that
    leaves the machine."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.outside = []
    ctx.on("request", lambda r: None if r.url.startswith(
        (server.rstrip("/"), "data:", "blob:", "about:")) else ctx.outside.append(r.url))  # fmt: skip
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def page(context):
    page = context.new_page()
    page.set_default_timeout(PAGE)
    yield page
    page.close()


def _settle(page) -> None:
    page.wait_for_function(DRAWN, timeout=PAGE)
    time.sleep(1)


def _png(pixels) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_demo_end_to_end(server, page, context, workdir):
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))

    # Set up: the quick start offers the ready-made demo model (a cold server: allow for it)
    page.goto(server)
    expect(page.get_by_role("heading", name="Set up")).to_be_visible(timeout=PAGE)
    expect(page.get_by_text("The demo preset:")).to_be_visible(timeout=PAGE)
    page.get_by_role("button", name="Use the demo preset").click()

    # Defend (SAU): two rounds, from the form; an out-of-range value is named, not silently ignored
    expect(page.get_by_role("heading", name="Defend the model")).to_be_visible()
    rounds = page.get_by_label("rounds", exact=True)
    rounds.fill("0")
    rounds.press("Tab")
    expect(page.get_by_text("rounds: must be at least 1.")).to_be_visible()
    expect(page.get_by_text("Fix these settings first")).to_be_visible()
    expect(page.get_by_role("button", name="Run SAU", exact=True)).to_be_disabled()
    rounds.fill("2")
    rounds.press("Tab")
    expect(page.get_by_text("Fix these settings first")).to_have_count(0)
    page.get_by_role("button", name="Run SAU", exact=True).click()
    expect(page.get_by_text("ACC, ASR, RA and largest pull per round").first).to_be_visible(
        timeout=LONG
    )
    expect(page.get_by_text("Before and after SAU")).to_be_visible(timeout=LONG)
    assert "?run=" in page.url
    run_url = page.url
    table = page.locator("[data-testid='stTable']").first  # before/after (the verdict follows)
    for word in ("ACC", "ASR", "RA", "before SAU", "after SAU"):
        expect(table).to_contain_text(word)
    expect(page.get_by_text("DER").first).to_be_visible()
    expect(page.get_by_text("Is the backdoor gone?")).to_be_visible()  # the verdict panel

    # A reload reattaches to the run named in the URL, without asking for a model
    page.reload()
    expect(page.get_by_text("Before and after SAU")).to_be_visible()
    expect(page.get_by_text("Choose a backdoored model")).to_have_count(0)

    # Per-class ASR: one line per source class, legend entries toggle their line
    expect(page.get_by_text("ASR per source class").first).to_be_visible()
    expect(page.get_by_text("Where the examples that fool h0 land").first).to_be_visible()
    per_class = page.locator(".js-plotly-plot", has_text="ASR per source class")
    legend = per_class.locator("g.legend g.traces", has_text="class 1")
    expect(legend).to_have_count(1)
    legend.click()
    expect(legend).to_have_css("opacity", "0.5")  # plotly greys out a hidden trace's entry

    # Gallery: the probe batch with its labels, the round slider and the trigger
    page.get_by_role("link", name="Gallery").first.click()
    expect(page.get_by_role("heading", name="Shared adversarial examples")).to_be_visible()
    expect(page.get_by_text("probe images have a shared adversarial example")).to_be_visible()
    expect(page.get_by_text("the real trigger (BadNets)")).to_be_visible()
    expect(page.get_by_text("blue = darker, grey = unchanged, red = brighter")).to_be_visible()
    expect(page.get_by_text("Round", exact=True)).to_be_visible()

    # Train a one-epoch backdoor from the form; the Attack page follows it to the end
    page.get_by_role("link", name="Set up").first.click()
    page.get_by_role("tab", name="Train your own").click()
    expect(page.get_by_text("Trigger preview")).to_be_visible()
    page.get_by_text("Training settings").click()
    epochs = page.get_by_label("epochs", exact=True)
    epochs.fill("1")
    epochs.press("Tab")
    _settle(page)
    page.get_by_role("button", name="Train the backdoored model").click()
    expect(page.get_by_role("heading", name="Attack: plant a backdoor")).to_be_visible()
    expect(page.get_by_text("The backdoored model")).to_be_visible(timeout=LONG)
    expect(page.get_by_text("Triggered test images").first).to_be_visible()

    # Upload your own model with your own trigger (BadNets' patch drawn as a PNG and a mask)
    import numpy as np

    page.get_by_role("link", name="Set up").first.click()
    page.get_by_role("tab", name="Upload a model").click()
    panel = page.get_by_role("tabpanel").filter(has_text="Bring your own backdoored model")
    weights = workdir / "checkpoints" / "badnets" / "model.safetensors"
    panel.locator("input[type=file]").nth(0).set_input_files(str(weights))
    _settle(page)

    def choose(label: str, option: str) -> None:
        box = panel.get_by_label(label, exact=True)  # a combobox: type to list the option
        box.click()
        box.fill(option)
        page.get_by_role("option", name=option, exact=True).click()
        _settle(page)

    # the data set: digits, the first (here the only) one offered
    choose("Digits image size", "8")
    choose("Architecture", "wide_cnn")
    choose("Trigger", "Your own trigger")
    patch = np.zeros((8, 8))
    patch[5:, 5:] = 255
    for i, name in ((2, "t.png"), (3, "m.png")):
        panel.locator("input[type=file]").nth(i).set_input_files(
            files=[{"name": name, "mimeType": "image/png", "buffer": _png(patch)}])  # fmt: skip
        _settle(page)
    page.get_by_role("button", name="Check and use this model").click()
    expect(page.get_by_role("heading", name="Defend the model")).to_be_visible(timeout=LONG)
    expect(page.get_by_text("uploaded model.safetensors").first).to_be_visible()

    # Runs: the three runs of this session are listed, and still after a reload (a cookie)
    page.get_by_role("link", name="Runs").first.click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    grid = page.locator("[data-testid='stDataFrame']")
    expect(grid).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    expect(page.get_by_text("No runs yet in this session")).to_have_count(0)
    expect(page.locator("[data-testid='stDataFrame']")).to_be_visible()

    # Explain: h0's and h's saliency maps on clean and triggered images, and the trigger focus
    page.goto(run_url)
    expect(page.get_by_text("Before and after SAU")).to_be_visible()
    page.get_by_role("link", name="Explain").first.click()
    expect(page.get_by_role("heading", name="Explain: where do the models look?")).to_be_visible()
    expect(page.get_by_text("After SAU, h puts")).to_be_visible(timeout=LONG)
    expect(page.get_by_text("h0 →").first).to_be_visible()

    # Compare: the SAU run's table row beside the backdoored model's, and its curves
    page.get_by_role("link", name="Compare").first.click()
    expect(page.get_by_role("heading", name="Compare defences")).to_be_visible()
    expect(page.locator("[data-testid='stDataFrame']")).to_be_visible(timeout=LONG)
    expect(page.get_by_text("ACC and ASR per round").first).to_be_visible(timeout=LONG)

    # Every page at both widths: no clipped text, a screenshot each
    pages = [("setup", "Set up"), ("attack", "Attack"), ("purify", None), ("gallery", "Gallery"),
             ("explain", "Explain"), ("compare", "Compare"), ("runs", "Runs")]  # fmt: skip
    clipped = {}
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 1000})
        for name, link in pages:
            if link is None:
                page.goto(run_url)
            else:
                page.get_by_role("link", name=link).first.click()
            _settle(page)
            time.sleep(1)
            screenshot(page, SHOTS / f"{width}_{name}.png")
            found = page.evaluate(CLIPPED)
            if found:
                clipped[f"{name} at {width} px"] = found
    assert not clipped, clipped
    assert page.locator("[data-testid='stException']").count() == 0
    assert not errors, errors
    assert not context.outside, context.outside  # the app asks nothing of the outside world


def test_another_browser_does_not_see_this_sessions_runs(server, browser, page):
    """A second browser profile (no cookie) lists none of the first one's runs; a link to one
    opens that run only."""
    from playwright.sync_api import expect

    other = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        p2 = other.new_page()
        p2.set_default_timeout(PAGE)
        p2.goto(server + "runs")
        expect(p2.get_by_role("heading", name="Runs")).to_be_visible()
        expect(p2.get_by_text("No runs yet in this session")).to_be_visible()
    finally:
        other.close()


def test_the_report_opens_offline(workdir, browser):
    """A run's HTML report opens from disk with every network request refused: its charts draw
    (plotly.js is inlined) and its pictures load (data: URLs)."""
    from playwright.sync_api import expect

    from dashboard.report import write_report
    from sau_core.serving.runs import RunStore

    store = RunStore(workdir / "runs")
    done = [r for r in store.scan()[0] if r.kind == "purify" and r.metrics]
    if done:
        run_dir = store.get(done[0].id).path
    else:  # the end-to-end test did not leave one: make a tiny run here
        from tests.lab import make_lab

        _, runs, ids = make_lab(workdir / "lab")
        run_dir = runs / ids[0]
    out = write_report(run_dir, workdir / "report.html")
    assert out.stat().st_size < 1_500_000
    context = browser.new_context(offline=True, viewport={"width": 1100, "height": 900})
    requests: list[str] = []

    def refuse(route):
        if not route.request.url.startswith(("file:", "data:")):
            requests.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", refuse)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        page.goto(out.resolve().as_uri())
        expect(page.get_by_role("heading", name="Before and after SAU")).to_be_visible()
        expect(page.locator(".js-plotly-plot .main-svg").first).to_be_visible(timeout=PAGE)
        assert page.locator(".js-plotly-plot").count() >= 3
        loaded = page.evaluate(
            "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
        )
        assert loaded and page.locator("img").count() >= 5
        # each chart fits its box: the plot's own width is the one it was drawn for
        widths = page.evaluate(
            "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
            ".map(p => [p.getBoundingClientRect().width, p.parentElement.getBoundingClientRect().width])"
        )
        assert all(w <= parent + 1 for w, parent in widths), widths
        page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
    finally:
        context.close()
    assert not requests, requests
    assert not errors, errors


def test_a_link_lets_another_browser_watch_but_not_stop(server, browser):
    """Browser A starts a long purify; browser B opens its link: B watches it, with no Stop
    button; A has Stop and stops it (issue 16: a run's link is not a remote control)."""
    from playwright.sync_api import expect

    a = browser.new_context(viewport={"width": 1400, "height": 1000})
    b = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = a.new_page()
        page.set_default_timeout(PAGE)
        page.goto(server)
        page.get_by_role("button", name="Use the demo preset").click()
        rounds = page.get_by_label("rounds", exact=True)
        rounds.fill("5000")
        rounds.press("Tab")
        page.get_by_role("button", name="Run SAU", exact=True).click()
        stop = page.get_by_role("button", name="Stop", exact=True)
        expect(stop).to_be_visible(timeout=LONG)
        assert "?run=" in page.url
        watcher = b.new_page()
        watcher.set_default_timeout(PAGE)
        watcher.goto(page.url)
        expect(
            watcher.get_by_text("only the session that started this run can stop it")
        ).to_be_visible()
        expect(watcher.get_by_role("button", name="Stop", exact=True)).to_have_count(0)
        stop.click()
        expect(page.get_by_text("stopped by the user").first).to_be_visible(timeout=LONG)
    finally:
        a.close()
        b.close()
