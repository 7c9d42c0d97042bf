"""A class on one server: N real chromium sessions each start a short purify, one idle session
times its pages.

The script starts its own dashboard (``streamlit run dashboard/app.py``, a fresh runs folder,
the real ready-made demo checkpoint) and one headless chromium with N + 1 contexts (a context
is a browser session: its own cookie, so its own owner id). Each of the N sessions opens
*Set up*, clicks "Use the demo preset", sets the rounds, names the run after itself and clicks
*Purify*, then keeps its page open (the live view polls every 2 s, as a class's would). Then:

- every session opens its neighbour's run by link and must be offered no Stop button;
- the idle session opens the *Runs* page again and again until every job ended, timing how
  long each takes to show its heading;
- each session's *Runs* page must list no other session's run.

Printed (nothing asserted): jobs finished of N, seconds per job (from the worker starting it
to its outputs written) against the same job from the command line (``sau purify`` in a new
process, wall time) and against it run in this process with every import warm (the stricter
figure: a worker starts with torch imported but pays torch's first-use costs), the idle page's
latency (median, max),
the server's peak resident memory and the workers' (the largest one), submissions whose URL
lacked the run id, foreign runs listed and Stop buttons offered to a non-owner. With
``--gc on`` the server runs with Streamlit's default ``runner.postScriptGC = true``
(``.streamlit/config.toml`` turns it off).

Usage:

    bash .ci/venv python bench/bench_classroom.py --sessions 10
    bash .ci/venv python bench/bench_classroom.py --sessions 30 --gc on
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import load_now, machine_line, parser
from tests.browser.server import ARGS, CHROMIUM, ROOT, free_port, stop_server, wait_healthy


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    out = []
    for task in Path("/proc").glob("[0-9]*"):
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
            out.append(int(task.name))
    return out


class MemoryWatch:
    """Peak RSS of the server process and of the largest of its descendants (the workers)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.server, self.worker = pid, 0.0, 0.0
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.done.is_set():
            self.server = max(self.server, rss_mib(self.pid))
            todo, seen = children(self.pid), set()
            while todo:
                child = todo.pop()
                if child in seen:
                    continue
                seen.add(child)
                self.worker = max(self.worker, rss_mib(child))
                todo.extend(children(child))
            time.sleep(0.5)


def cli_process_seconds(ckpt: Path, rounds: int, out: Path) -> float:
    """The same job from the command line: ``sau purify`` in a new process, wall time."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sau_core.cli", "purify", "--checkpoint", str(ckpt),
                    "--rounds", str(rounds), "--out", str(out), "--overwrite", "--quiet"],
                   check=True, env=env, capture_output=True)  # fmt: skip
    return time.perf_counter() - t


def cli_seconds(ckpt: Path, rounds: int, out: Path) -> float:
    """The same job through ``sau purify``'s code, in this process (imports warm)."""
    from sau_core.cli import main

    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["purify", "--checkpoint", str(ckpt), "--rounds", str(rounds), "--out",
                     str(out), "--overwrite", "--quiet"])  # fmt: skip
    if code != 0:
        raise SystemExit(f"sau purify failed ({code})")
    return time.perf_counter() - t


def start(workdir: Path, gc: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, SAU_LAB_RUNS=str(workdir / "runs"))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
           "--server.port", str(port), "--server.headless", "true",
           "--server.address", "127.0.0.1"]  # fmt: skip
    if gc != "config":
        cmd += ["--runner.postScriptGC", "true" if gc == "on" else "false"]
    log = open(workdir / "streamlit.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}/"


def submit(page, url: str, name: str, rounds: int, timeout: float) -> str:
    from playwright.sync_api import expect

    page.goto(url)
    page.get_by_role("button", name="Use the demo preset").click(timeout=timeout)
    expect(page.get_by_role("heading", name="Purify with SAU")).to_be_visible(timeout=timeout)
    box = page.get_by_label("rounds", exact=True)
    box.fill(str(rounds))
    box.press("Tab")
    page.get_by_label("Name for this run (optional)").fill(name)
    page.get_by_label("Name for this run (optional)").press("Tab")
    page.get_by_role("button", name="Purify", exact=True).click(timeout=timeout)
    expect(page.get_by_text(f"Run: {name}")).to_be_visible(timeout=timeout)
    time.sleep(1.0)  # what a person does after clicking: look at the page
    return page.url


def main() -> None:
    ap = parser(__doc__, epilog=True)
    ap.add_argument("--sessions", type=int, default=10, help="browser sessions that purify")
    ap.add_argument("--rounds", type=int, default=2, help="SAU rounds of each short purify")
    ap.add_argument("--gc", choices=("config", "on", "off"), default="config",
                    help="runner.postScriptGC: the config file's (off), or forced on/off")  # fmt: skip
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for all jobs")
    args = ap.parse_args()
    if not 1 <= args.sessions <= 200 or not 1 <= args.rounds <= 1000:
        ap.error("--sessions must be 1-200 and --rounds 1-1000")

    from playwright.sync_api import sync_playwright

    from sau_core.lab.ready import list_ready
    from sau_core.serving.runs import RunStore

    print(machine_line())
    ready, problem = list_ready()
    demo = [r for r in ready if r.attack.get("name") == "badnets"]
    if not demo:
        raise SystemExit(f"no ready-made BadNets checkpoint: {problem}")
    ckpt = demo[0].path
    from sau_core.serving.workers import warm_up

    t = time.perf_counter()
    warm_up()  # this process's fork server: what the dashboard starts at launch
    first = time.perf_counter() - t
    t = time.perf_counter()
    warm_up()
    print(f"a worker process: {first:.1f} s with the fork server's start (torch and the engine "
          f"imported once), {time.perf_counter() - t:.3f} s after it ({load_now()})")  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="sau-classroom-"))
    cli = [cli_process_seconds(ckpt, args.rounds, workdir / f"cli-{i}") for i in range(2)]
    print(f"the same job alone from the command line (sau purify, a new process each): "
          f"{', '.join(f'{s:.1f}' for s in cli)} s ({load_now()})")  # fmt: skip
    alone = [cli_seconds(ckpt, args.rounds, workdir / f"warm-{i}") for i in range(3)]
    print(f"the same job alone through sau purify's code in this process (no imports; the "
          f"first call also pays torch's first-use costs): {', '.join(f'{s:.1f}' for s in alone)}"
          f" s ({load_now()})")  # fmt: skip
    proc, url = start(workdir, args.gc)
    memory = MemoryWatch(proc.pid)
    wait = args.timeout * 1000
    try:
        wait_healthy(proc, url, timeout=180)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            pages, urls = [], []
            t0 = time.time()
            for i in range(args.sessions):
                page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                urls.append(submit(page, url, f"session-{i:02d}", args.rounds, wait))
                pages.append(page)
            print(f"{args.sessions} sessions submitted in {time.time() - t0:.0f} s "
                  f"({load_now()})")  # fmt: skip
            no_id = sum("run=" not in u for u in urls)
            stops = 0
            for i, page in enumerate(pages):  # the neighbour's link, while it is queued/running
                other = urls[(i + 1) % len(urls)]
                if "run=" not in other or len(urls) < 2:
                    continue
                look = page.context.new_page()
                look.goto(other)
                look.get_by_text("Run: session-").first.wait_for(timeout=wait)
                time.sleep(0.5)
                stops += look.get_by_role("button", name="Stop", exact=True).count()
                look.close()
            idle = browser.new_context().new_page()
            store = RunStore(workdir / "runs")
            latencies = []
            end = time.time() + args.timeout
            while time.time() < end:
                t = time.perf_counter()
                idle.goto(url + "runs")
                idle.get_by_role("heading", name="Runs").wait_for(timeout=wait)
                latencies.append(time.perf_counter() - t)
                states = [r.state for r in store.scan()[0] if r.kind == "purify"]
                if len(states) >= args.sessions and all(
                    s not in ("queued", "running") for s in states
                ):
                    break
                time.sleep(1.0)
            leaks, own = 0, 0
            labels = [r.label for r in store.scan()[0] if r.kind == "purify"]
            for i, page in enumerate(pages):
                page.goto(url + "runs")
                page.get_by_role("heading", name="Runs").wait_for(timeout=wait)
                time.sleep(1.0)
                # the run list is a data grid drawn on a canvas; its accessible copy of the
                # cells is in the DOM (text_content also reads what is not painted)
                text = page.locator("[data-testid='stMain']").text_content() or ""
                mine = f"session-{i:02d}"
                own += mine in text  # the control: the check must see the session's own run
                leaks += sum(label in text for label in labels if label != mine)
            browser.close()
    finally:
        memory.done.set()
        stop_server(proc)
    infos = [r for r in RunStore(workdir / "runs").scan()[0] if r.kind == "purify"]
    finished = [r for r in infos if r.state == "finished"]
    per_job = []
    for r in finished:  # from the worker starting the job to its outputs written
        status = RunStore(workdir / "runs").get(r.id).status()
        if isinstance(status.get("t_work"), float) and isinstance(status.get("t_done"), float):
            per_job.append(status["t_done"] - status["t_work"])
    base, warm = min(cli), min(alone)
    print()
    print("| sessions | jobs finished | s per job: median (max) | vs CLI | vs warm | idle Runs page s: "
          "median (max) | server RSS peak MiB | largest worker MiB | URL without run id | "
          "foreign runs listed | Stop offered to a non-owner | postScriptGC |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    med = statistics.median(per_job) if per_job else float("nan")
    print(f"| {args.sessions} | {len(finished)} of {args.sessions} | {med:.1f} "
          f"({max(per_job, default=float('nan')):.1f}) | {med / base:.2f}x | {med / warm:.2f}x "
          f"| {statistics.median(latencies):.2f} ({max(latencies):.2f}) | {memory.server:.0f} | "
          f"{memory.worker:.0f} | {no_id} | {leaks} (own run seen by {own} of {len(pages)}) | "
          f"{stops} | {args.gc} |")  # fmt: skip
    print(f"\n(job seconds: status.json's t_work to t_done; load at the end: {load_now()}; "
          f"{len(latencies)} idle page loads; logs in {workdir})")  # fmt: skip


if __name__ == "__main__":
    main()
