"""The tour's screenshots in the README (docs/images/), taken from the real dashboard.

Starts ``streamlit run dashboard/app.py`` on the shipped ready-made checkpoints and a fresh runs
folder, uses the demo preset, purifies it with the demo's settings, and saves Set up, Purify,
Gallery and Explain at 1400 px, reduced to 256 colours to keep them small. Usage::

    bash .ci/venv python docs/make_screenshots.py [--out docs/images] [--rounds 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser.server import (  # noqa: E402
    launch_browser,
    screenshot,
    start_server,
    stop_server,
    wait_healthy,
)

DRAWN = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"


def _small(path: Path, width: int = 1100) -> None:
    from PIL import Image

    img = Image.open(path).convert("RGB")
    if img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.Resampling.LANCZOS)
    img.quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    ap.add_argument("--rounds", type=int, default=None, help="default: the demo's")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sau-tour-") as tmp:
        proc, url = start_server(Path(tmp), ROOT / "assets" / "checkpoints")
        try:
            wait_healthy(proc, url)
            with launch_browser() as browser:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(600_000)
                page.goto(url)
                page.get_by_role("button", name="Use the demo preset").wait_for()
                time.sleep(1)
                screenshot(page, args.out / "setup.png")
                page.get_by_role("button", name="Use the demo preset").click()
                if args.rounds:
                    page.get_by_label("rounds", exact=True).fill(str(args.rounds))
                    page.get_by_label("rounds", exact=True).press("Tab")
                    time.sleep(1)
                page.get_by_role("button", name="Run SAU", exact=True).click()
                page.get_by_text("Before and after SAU").wait_for()
                page.wait_for_function(DRAWN)
                time.sleep(2)
                screenshot(page, args.out / "purify.png")
                for name, link, ready in (("gallery", "Gallery", "probe images have a shared"),
                                          ("explain", "Explain", "After SAU, h puts")):  # fmt: skip
                    page.get_by_role("link", name=link).first.click()
                    page.get_by_text(ready).first.wait_for()
                    page.wait_for_function(DRAWN)
                    time.sleep(2)
                    screenshot(page, args.out / f"{name}.png")
        finally:
            stop_server(proc)
    for name in ("setup", "purify", "gallery", "explain"):
        _small(args.out / f"{name}.png")
        print(args.out / f"{name}.png", (args.out / f"{name}.png").stat().st_size)


if __name__ == "__main__":
    main()
