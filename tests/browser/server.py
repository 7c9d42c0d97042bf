"""Helpers for the browser test and the dashboard benchmark: a Streamlit server in a subprocess,
Debian's chromium through Playwright, full-page screenshots of Streamlit's scrolling main area.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_ready(out: Path, epochs: int = 1, resolution: int = 8) -> Path:
    """A ready-made demo checkpoint set trained on a tiny budget (for tests)."""
    from sau_core.data import DataSpec
    from sau_core.lab.presets import DEMO
    from sau_core.lab.ready import make_ready

    preset = replace(
        DEMO,
        data=DataSpec("digits", None, {**DEMO.data.kwargs, "resolution": resolution}),
        train=replace(DEMO.train, epochs=epochs),
    )
    make_ready(out, [DEMO.attack.name], preset)
    return out


def start_server(workdir: Path, checkpoints: Path | None = None) -> tuple[subprocess.Popen, str]:
    """``streamlit run dashboard/app.py`` on a free port, runs under ``workdir``; not yet waited on."""
    port = free_port()
    env = dict(os.environ)
    env["SAU_LAB_RUNS"] = str(workdir / "runs")
    if checkpoints is not None:
        env["SAU_LAB_CHECKPOINTS"] = str(checkpoints)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
           "--server.port", str(port), "--server.headless", "true",
           "--server.address", "127.0.0.1"]  # fmt: skip
    log = open(workdir / "streamlit.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}/"


def wait_healthy(proc: subprocess.Popen, url: str, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("streamlit did not come up")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def streamlit_server(workdir: Path) -> Iterator[str]:
    """A running dashboard with a tiny ready-made demo checkpoint; yields its URL."""
    checkpoints = tiny_ready(workdir / "checkpoints")
    proc, url = start_server(workdir, checkpoints)
    try:
        wait_healthy(proc, url)
        yield url
    finally:
        stop_server(proc)


@contextlib.contextmanager
def launch_browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page, path: Path, settle: float = 1.0) -> None:
    """The whole page: Streamlit scrolls inside its main area, so grow the viewport to fit it."""
    time.sleep(settle)
    size = page.viewport_size
    height = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
        " return m ? m.scrollHeight : 0 }"
    )
    page.set_viewport_size(
        {"width": size["width"], "height": min(max(height, size["height"]), 6000)}
    )
    time.sleep(0.5)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
