"""Dashboard timings in a real browser (headless Debian chromium through Playwright).

1. From starting ``streamlit run dashboard/app.py`` to the first page fully drawn (the Set up
   page's script run has ended and its quick-start button is on screen).
2. From clicking "Purify" on the digits BadNets demo preset (the ready-made checkpoint, SAU
   settings as the form pre-fills them from ``sau_core.lab.presets.DEMO``) to the finished
   before/after table on screen.

Usage::

    bash .ci/venv python bench/bench_dashboard.py                  # assets/checkpoints, DEMO's rounds
    bash .ci/venv python bench/bench_dashboard.py --tiny --rounds 5  # a 1-epoch 8x8 stand-in model

Without ready-made checkpoints (``assets/make_checkpoints.py``) pass ``--tiny``: it trains a
one-epoch stand-in first (not timed). Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from dashboard.charts import before_after_rows
from sau_core.lab.presets import DEMO
from sau_core.lab.ready import default_dir, list_ready
from sau_core.serving.runs import RunStore
from tests.browser.server import (
    launch_browser,
    screenshot,
    start_server,
    stop_server,
    tiny_ready,
)

DRAWN = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"


def shots(page, out: Path) -> None:
    """Screenshots of the finished demo: Purify, Gallery, Explain, Set up."""
    screenshot(page, out / "purify_done.png")
    page.get_by_role("link", name="Gallery").first.click()
    page.get_by_text("probe images have a shared adversarial example").wait_for()
    screenshot(page, out / "gallery.png")
    page.get_by_role("link", name="Explain").first.click()
    page.get_by_text("Trigger focus").first.wait_for()
    page.wait_for_function(DRAWN)
    screenshot(page, out / "explain.png", settle=3)
    page.get_by_role("link", name="Set up").first.click()
    page.get_by_role("button", name="Use the demo preset").wait_for()
    screenshot(page, out / "setup.png")
    print(f"screenshots in {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="use a 1-epoch 8x8 stand-in checkpoint")
    ap.add_argument("--rounds", type=int, default=None, help="SAU rounds (default: the form's)")
    ap.add_argument("--repeat", type=int, default=1, help="server starts to time")
    ap.add_argument(
        "--screenshots",
        type=Path,
        default=None,
        help="also save screenshots here (Set up, Purify live and finished, Gallery, Explain); "
        "taken after the timings, so they do not change them",
    )
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="sau-bench-") as tmp:
        work = Path(tmp)
        checkpoints = tiny_ready(work / "checkpoints") if args.tiny else default_dir()
        entries, note = list_ready(checkpoints)
        if not any(e.name == DEMO.attack.name for e in entries):
            raise SystemExit(f"{note or 'no demo checkpoint'}; or pass --tiny")
        print(
            f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads"
        )
        print(f"checkpoints: {checkpoints}{' (tiny stand-in)' if args.tiny else ''}")

        with launch_browser() as browser:
            for i in range(args.repeat):
                t0 = time.perf_counter()
                proc, url = start_server(work, checkpoints)
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.set_default_timeout(600_000)
                    while True:  # the server is not listening yet
                        try:
                            page.goto(url)
                            break
                        except Exception:
                            if proc.poll() is not None:
                                raise
                            time.sleep(0.1)
                    page.get_by_role("button", name="Use the demo preset").wait_for()
                    page.wait_for_function(DRAWN)
                    t_first = time.perf_counter() - t0
                    print(f"[{i + 1}] server start -> first page drawn: {t_first:.1f} s")
                    if i + 1 < args.repeat:
                        continue
                    page.get_by_role("button", name="Use the demo preset").click()
                    rounds = page.get_by_label("rounds", exact=True)
                    rounds.wait_for()
                    if args.rounds is not None:
                        rounds.fill(str(args.rounds))
                        rounds.press("Tab")
                    shown = rounds.input_value()
                    t1 = time.perf_counter()
                    page.get_by_role("button", name="Purify", exact=True).click()
                    page.get_by_text("ACC, ASR and RA per round").first.wait_for()
                    t_live = time.perf_counter() - t1
                    if args.screenshots:  # mid-run (costs a little of the purify time)
                        args.screenshots.mkdir(parents=True, exist_ok=True)
                        time.sleep(15)
                        page.screenshot(path=str(args.screenshots / "purify_live.png"))
                    page.get_by_text("Before and after SAU").wait_for()
                    t_done = time.perf_counter() - t1
                    print(f"click Purify -> live charts on screen: {t_live:.1f} s")
                    print(f"click Purify ({shown} rounds) -> before/after table: {t_done:.1f} s")
                    run = RunStore(work / "runs").scan()[0][0]
                    m = run.metrics or {}
                    for row in before_after_rows(m):
                        print("   " + "  ".join(f"{v:>10s}" for v in row.values()))
                    print(f"   SAU loop {m.get('seconds', 0):.1f} s on {m.get('device')}")
                    if args.screenshots:
                        shots(page, args.screenshots)
                    page.close()
                finally:
                    stop_server(proc)


if __name__ == "__main__":
    main()
