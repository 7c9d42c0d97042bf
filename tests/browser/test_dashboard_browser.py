"""End to end in a real browser: ``streamlit run dashboard/app.py`` driven by headless chromium.

Goes through the demo as a user would: load the preset, purify with two rounds from the form,
watch the live page, reload (the run's URL reattaches), open the gallery and the per-class ASR
chart, train a one-epoch backdoor, list the runs, explain the SAU run (saliency of h0 and h) and
compare it; then the run's HTML report is opened from disk with the network refused. A screenshot of each page is saved under
``$SAU_SCREENSHOTS`` (default ``tests/browser/screenshots/``, ignored by git).

Needs Debian's chromium at /usr/bin/chromium (``.ci/run`` installs it); Playwright's own browser
download is not used.
"""

from __future__ import annotations

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
LONG = 240_000  # ms: a shared 2-core machine can be slow


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
def page(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    yield page
    page.close()


def test_demo_end_to_end(server, page):
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))

    # Set up: the quick start offers the ready-made demo model
    page.goto(server)
    expect(page.get_by_role("heading", name="Set up")).to_be_visible()
    expect(page.get_by_text("The demo preset:")).to_be_visible()
    screenshot(page, SHOTS / "1_setup.png")
    page.get_by_role("button", name="Use the demo preset").click()

    # Purify: two rounds, from the form
    expect(page.get_by_role("heading", name="Purify with SAU")).to_be_visible()
    rounds = page.get_by_label("rounds", exact=True)
    rounds.fill("2")
    rounds.press("Tab")
    page.get_by_role("button", name="Purify", exact=True).click()
    expect(page.get_by_text("ACC, ASR and RA per round").first).to_be_visible(timeout=LONG)
    expect(page.get_by_text("Before and after SAU")).to_be_visible(timeout=LONG)
    assert "?run=" in page.url
    table = page.locator("[data-testid='stTable']")
    for word in ("ACC", "ASR", "RA", "before SAU", "after SAU"):
        expect(table).to_contain_text(word)
    expect(page.get_by_text("DER").first).to_be_visible()
    screenshot(page, SHOTS / "2_purify.png")

    # A reload reattaches to the run named in the URL
    page.reload()
    expect(page.get_by_text("Before and after SAU")).to_be_visible()

    # Per-class ASR: one line per source class, legend entries toggle their line
    expect(page.get_by_text("ASR per source class").first).to_be_visible()
    expect(page.get_by_text("Where the examples that fool h0 land").first).to_be_visible()
    per_class = page.locator(".js-plotly-plot", has_text="ASR per source class")
    legend = per_class.locator("g.legend g.traces", has_text="class 1")
    expect(legend).to_have_count(1)
    legend.click()
    expect(legend).to_have_css("opacity", "0.5")  # plotly greys out a hidden trace's entry

    # Gallery: the probe batch with its labels and the round slider
    page.get_by_role("link", name="Gallery").first.click()
    expect(page.get_by_role("heading", name="Shared adversarial examples")).to_be_visible()
    expect(page.get_by_text("probe images have a shared adversarial example")).to_be_visible()
    expect(page.get_by_text("the real trigger (badnets)")).to_be_visible()
    expect(page.locator("[data-testid='stImage']").nth(4)).to_be_visible()  # trigger + 4 probes
    expect(page.get_by_text("Round", exact=True)).to_be_visible()
    screenshot(page, SHOTS / "3_gallery.png")

    # Train a one-epoch backdoor from the form; the Attack page follows it to the end
    page.get_by_role("link", name="Set up").first.click()
    page.get_by_role("tab", name="Train your own").click()
    expect(page.get_by_text("Trigger preview")).to_be_visible()
    page.get_by_text("Training settings").click()
    epochs = page.get_by_label("epochs", exact=True)
    epochs.fill("1")
    epochs.press("Tab")
    screenshot(page, SHOTS / "4_setup_train.png")
    page.get_by_role("button", name="Train the backdoored model").click()
    expect(page.get_by_role("heading", name="Attack: plant a backdoor")).to_be_visible()
    expect(page.get_by_text("The backdoored model")).to_be_visible(timeout=LONG)
    expect(page.get_by_text("Triggered test images").first).to_be_visible()
    screenshot(page, SHOTS / "5_attack.png")

    # Runs: both runs are listed
    page.get_by_role("link", name="Runs").first.click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    time.sleep(1)
    screenshot(page, SHOTS / "6_runs.png")

    # Explain: h0's and h's saliency maps on clean and triggered images, and the trigger focus
    page.get_by_role("link", name="Explain").first.click()
    expect(page.get_by_role("heading", name="Explain: where do the models look?")).to_be_visible()
    expect(page.get_by_text("After SAU, h puts")).to_be_visible(timeout=LONG)
    expect(page.get_by_text("h0 →").first).to_be_visible()
    expect(page.get_by_text("h →").first).to_be_visible()
    screenshot(page, SHOTS / "7_explain.png")

    # Compare: the SAU run's table row and its curves
    page.get_by_role("link", name="Compare").first.click()
    expect(page.get_by_role("heading", name="Compare runs")).to_be_visible()
    expect(page.get_by_text("ACC and ASR per round").first).to_be_visible(timeout=LONG)
    screenshot(page, SHOTS / "8_compare.png")
    assert page.locator("[data-testid='stException']").count() == 0
    assert not errors, errors


def test_the_report_opens_offline(workdir, browser):
    """A run's HTML report opens from disk with every network request refused: its charts draw
    (plotly.js is inlined) and its pictures load (data: URLs)."""
    from playwright.sync_api import expect

    from dashboard.report import write_report
    from sau_core.runs import RunStore

    store = RunStore(workdir / "runs")
    done = [r for r in store.scan()[0] if r.kind == "purify" and r.metrics]
    if done:
        run_dir = store.get(done[0].id).path
    else:  # the end-to-end test did not leave one: make a tiny run here
        from tests.lab import make_lab

        _, runs, ids = make_lab(workdir / "lab")
        run_dir = runs / ids[0]
    out = write_report(run_dir, workdir / "report.html")
    context = browser.new_context(offline=True)
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
        expect(page.locator(".js-plotly-plot .main-svg").first).to_be_visible(timeout=30_000)
        assert page.locator(".js-plotly-plot").count() >= 3
        loaded = page.evaluate(
            "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
        )
        assert loaded and page.locator("img").count() >= 5
        page.screenshot(path=str(SHOTS / "9_report.png"), full_page=True)
    finally:
        context.close()
    assert not requests, requests
    assert not errors, errors
