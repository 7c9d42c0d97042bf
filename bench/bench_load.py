"""Load: many sessions sharing one job runner, as on a classroom server.

``--clients`` threads (default 20) each play one browser session: a random owner id, like
``dashboard.state.owner``, and one digits purify job (8x8 images, 2 SAU rounds) submitted at
the same moment to one :class:`sau_core.serving.JobRunner` with ``max_active=1``, as the dashboard
runs it. The checkpoint is a tiny ready-made one (:func:`sau_core.lab.ready.make_ready`, one
training epoch) built in a temporary folder. Each client then polls its job's view until it
ends and lists its runs (``runner.runs(owner)``).

Checked and printed:

- every job finishes, and each client lists exactly its own run (no cross-talk);
- the queue positions the clients saw right after submitting (each one distinct);
- while the queue is full, how long an idle session takes to draw: ``runner.view`` of a queued
  job plus its run list (``RunStore.scan``), and a whole Runs page under Streamlit's AppTest
  (its listing reads the same runs directory);
- peak resident memory of this process (``ru_maxrss``).

Usage:

    bash .ci/venv python bench/bench_load.py                 # 20 clients (about a minute)
    bash .ci/venv python bench/bench_load.py --clients 5
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sau_core.data import DataSpec  # noqa: E402
from sau_core.defenses.sau import SAUConfig  # noqa: E402
from sau_core.lab.presets import DEMO  # noqa: E402
from sau_core.lab.ready import make_ready  # noqa: E402
from sau_core.serving import JobRunner, PurifyJob  # noqa: E402
from sau_core.serving.runs import RunStore  # noqa: E402


def _ms(values: list[float]) -> str:
    if not values:
        return "none measured"
    return (f"median {1000 * statistics.median(values):.1f} ms, max {1000 * max(values):.1f} ms "
            f"({len(values)} draws)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for all jobs")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="sau-load-") as tmp:
        tmp = Path(tmp)
        preset = replace(
            DEMO,
            data=DataSpec("digits", None, {**DEMO.data.kwargs, "resolution": args.resolution}),
            train=replace(DEMO.train, epochs=1),
        )
        t0 = time.perf_counter()
        make_ready(tmp / "checkpoints", [DEMO.attack.name], preset)
        print(f"tiny ready-made checkpoint: {time.perf_counter() - t0:.1f} s")
        ckpt = str(tmp / "checkpoints" / DEMO.attack.name)
        split = preset.data.load()  # the server's shared, read-only copy
        store = RunStore(tmp / "runs")
        runner = JobRunner(store, max_active=1)
        sau = SAUConfig(rounds=args.rounds, batch_size=64, probe_size=4, eval_size=100)
        job = PurifyJob(ckpt, sau, 0.1, attack=preset.attack, data=preset.data, device="cpu")

        start = threading.Barrier(args.clients + 1)
        results: dict[str, dict] = {}
        lock = threading.Lock()

        def client(n: int) -> None:
            owner = secrets.token_hex(8)
            start.wait()
            t = time.perf_counter()
            run_id = runner.submit(job, label=f"client {n}", split=split, owner=owner)
            position = runner.position(run_id)
            while runner.view(run_id).active:
                time.sleep(0.2)
            view = runner.view(run_id)
            listed = [r.id for r in runner.runs(owner)]
            with lock:
                results[owner] = {"run": run_id, "state": view.state, "position": position,
                                  "listed": listed, "seconds": time.perf_counter() - t}  # fmt: skip

        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        for th in threads:
            th.start()
        t_start = time.perf_counter()
        start.wait()

        # an idle session while the queue is full: the engine calls, then a whole Runs page
        idle = secrets.token_hex(8)
        engine, pages, peak_queue = [], [], 0
        os.environ["SAU_LAB_RUNS"] = str(store.root)
        os.environ["SAU_LAB_CHECKPOINTS"] = str(tmp / "checkpoints")
        from streamlit.testing.v1 import AppTest

        app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
        app.switch_page("app_pages/runs.py")
        time.sleep(0.5)  # let the clients submit
        while runner.queued() > 1:
            peak_queue = max(peak_queue, runner.queued())
            waiting = [r for r in runner.active() if runner.view(r).state == "queued"]
            t = time.perf_counter()
            if waiting:
                runner.view(waiting[-1])
            runner.runs(idle)
            engine.append(time.perf_counter() - t)
            t = time.perf_counter()
            app.run()
            pages.append(time.perf_counter() - t)
            assert not app.exception, [e.value for e in app.exception]
            time.sleep(0.1)
        for th in threads:
            th.join(args.timeout)
        wall = time.perf_counter() - t_start

    states = [r["state"] for r in results.values()]
    own = [r["listed"] == [r["run"]] for r in results.values()]
    positions = sorted(r["position"] for r in results.values() if r["position"] is not None)
    idle_rows = len(app.dataframe[0].value) if pages and app.dataframe else 0
    print(f"clients: {args.clients}, jobs: digits {args.resolution}x{args.resolution} purify, "
          f"{args.rounds} SAU rounds, max_active=1, torch threads 1")  # fmt: skip
    print(f"finished: {states.count('finished')}/{args.clients} (states {sorted(set(states))}), "
          f"all done in {wall:.1f} s; per client {min(r['seconds'] for r in results.values()):.1f}"
          f" to {max(r['seconds'] for r in results.values()):.1f} s")  # fmt: skip
    print(f"no cross-talk: {sum(own)}/{args.clients} clients list exactly their own run; "
          f"the idle session's Runs page lists {idle_rows} runs")  # fmt: skip
    print(f"queue positions seen at submit: {positions} (peak queue {peak_queue})")
    print(f"idle session, runner.view + its run list while the queue is full: {_ms(engine)}")
    print(f"idle session, Runs page redraw (AppTest) while the queue is full: {_ms(pages)}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {rss / 1024:.0f} MiB")
    ok = len(results) == args.clients and all(own) and states.count("finished") == args.clients
    ok = ok and idle_rows == 0
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
