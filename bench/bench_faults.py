"""Crash safety: kill the server running purify jobs, or one of its workers, with SIGKILL at
random points.

Each trial starts a driver process (``python bench/bench_faults.py --driver ROOT CKPT``, the
server) that runs digits purify jobs one after the other through
:class:`sau_core.serving.JobRunner` (8x8 images, a few rounds), each in a worker process, waits
until its first job has started and sleeps a random time. Then it kills the server, or (every
other trial, ``--kill both``) first the worker of the job under way (the pid its status.json
names), waits a second for the server to start its next job, and kills the server. Then, in
this process, once the killed server's workers have ended (they end within half a second):

- every run whose status says *finished* must be intact: ``metrics.json`` parses and the run
  directory loads as a checkpoint (``load_checkpoint``);
- the run that was killed must read as *interrupted* (its owner is dead) once
  ``RunStore.mark_interrupted`` (what the dashboard calls when it starts) has written it down;
  its last completed round (status.json) is compared with the last ``SAURound`` line of its
  ``events.jsonl``;
- the run list must still load (a torn file is skipped, not a crash);
- every interrupted run is resumed (:meth:`sau_core.serving.JobRunner.resume`, one thread) from the
  state its last completed round saved, must finish, load as a checkpoint, hold each SAURound
  exactly once, and give the same weights, bit for bit, as a reference run of the same job that
  nothing interrupted.

Prints one line per trial and the totals. Usage:

    bash .ci/venv python bench/bench_faults.py               # 10 trials (about 3 minutes)
    bash .ci/venv python bench/bench_faults.py --trials 3 --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
JOBS_PER_DRIVER = 3
ROUNDS = 6


def driver(root: str, ckpt: str) -> None:
    """Run purify jobs one after the other, printing each run id as it is submitted."""
    import torch

    torch.set_num_threads(1)
    from sau_core.serving import JobRunner
    from sau_core.serving.runs import RunStore
    from sau_core.serving.workers import warm_up

    warm_up()  # the fork server, as the dashboard starts it at launch
    runner = JobRunner(RunStore(root))
    for _ in range(JOBS_PER_DRIVER):
        run_id = runner.submit(_job(ckpt))
        print(run_id, flush=True)
        runner.wait(run_id)
    print("done", flush=True)


def _job(ckpt: str):
    from sau_core.defenses.sau import SAUConfig
    from sau_core.serving import PurifyJob

    config = SAUConfig(rounds=ROUNDS, batch_size=64, eval_size=200, probe_size=8)
    return PurifyJob(ckpt, settings=config, clean_ratio=0.2, device="cpu")


def reference(root: Path, ckpt: str) -> dict:
    """The weights of the driver's job run to the end in this process (one thread)."""
    import torch

    from sau_core.io.checkpoint import load_checkpoint
    from sau_core.serving import JobRunner
    from sau_core.serving.runs import RunStore

    torch.set_num_threads(1)
    runner = JobRunner(RunStore(root))
    run_id = runner.submit(_job(ckpt))
    runner.wait(run_id)
    return load_checkpoint(runner.store.get(run_id).path).model.state_dict()


def resume_all(root: Path, ids: list[str], expected: dict | None) -> list[tuple[str, str]]:
    """Resume each interrupted run; (id, outcome) with outcome "equal", "differs" or the error."""
    import torch

    from sau_core.io.checkpoint import load_checkpoint
    from sau_core.serving import JobRunner
    from sau_core.serving.runs import RunStore

    torch.set_num_threads(1)
    runner = JobRunner(RunStore(root))
    out = []
    for run_id in ids:
        try:
            runner.resume(run_id)
            runner.wait(run_id)
            run = runner.store.get(run_id)
            status = run.status()
            if status["state"] != "finished":
                out.append((run_id, f"{status['state']}: {status.get('message')}"))
                continue
            rounds = [r["round"] for r in run.events() if r["event"] == "SAURound"]
            if rounds != list(range(1, ROUNDS + 1)):
                out.append((run_id, f"rounds in events: {rounds}"))
                continue
            got = load_checkpoint(run.path).model.state_dict()
            same = expected is None or all(torch.equal(got[k], v) for k, v in expected.items())
            out.append((run_id, "equal" if same else "differs"))
        except Exception as err:  # a bench reports, it does not stop
            out.append((run_id, f"{type(err).__name__}: {err}"))
    return out


def _last_event_round(run) -> int | None:
    rounds = [r.get("round") for r in run.events() if r.get("event") == "SAURound"]
    return rounds[-1] if rounds else None


def settle(root: Path, timeout: float = 30.0) -> float:
    """Wait until no run under ``root`` reads as queued or running (a dead server's workers end
    within half a second); the seconds it took."""
    from sau_core.serving.runs import ACTIVE_STATES, RunStore

    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        if not any(r.state in ACTIVE_STATES for r in RunStore(root).scan()[0]):
            break
        time.sleep(0.1)
    return time.perf_counter() - t


def kill_worker(root: Path) -> bool:
    """SIGKILL the worker of the run under way (status.json names its pid); whether one was."""
    from sau_core.serving.runs import RunStore

    for info in RunStore(root).scan()[0]:
        if info.state == "running":
            pid = (RunStore(root).get(info.id).status().get("owner") or {}).get("pid")
            if isinstance(pid, int) and pid != os.getpid():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    return False
                return True
    return False


def check(root: Path) -> dict:
    """What a restarted server sees under ``root``: finished runs verified, the rest classified."""
    from sau_core.io.checkpoint import load_checkpoint
    from sau_core.serving.runs import RunStore

    settle(root)
    store = RunStore(root)
    marked = store.mark_interrupted()  # what the dashboard does when it starts
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        infos = store.list()
    out = {"finished": 0, "intact": 0, "interrupted": [], "other": [], "skipped": len(caught)}
    for info in infos:
        run = store.get(info.id)
        if info.state == "finished":
            out["finished"] += 1
            json.loads((run.path / "metrics.json").read_text())
            load_checkpoint(run.path)
            out["intact"] += 1
        elif info.state == "interrupted":
            out["interrupted"].append((info.id, info.round, _last_event_round(run)))
        else:
            out["other"].append((info.id, info.state))
    out["marked"] = len(marked)
    out["tmp_files"] = sum(1 for p in root.rglob("*.tmp"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=12.0, help="seconds (default 12)")
    parser.add_argument("--kill", choices=("server", "both"), default="both",
                        help="server: kill the server only; both (default): every other trial "
                        "kills a worker first")  # fmt: skip
    parser.add_argument("--driver", nargs=2, metavar=("ROOT", "CKPT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        driver(*args.driver)
        return 0

    import random

    from sau_core.data import DataSpec, load_digits
    from sau_core.io.checkpoint import save_checkpoint
    from sau_core.models import create_model

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="sau-faults-"))
    ckpt = work / "ckpt"
    info = load_digits(resolution=8).info
    save_checkpoint(ckpt, create_model("small_cnn", info, seed=0),
                    {"data": DataSpec("digits", None, {"resolution": 8}).to_dict()})  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t0 = time.perf_counter()
    expected = reference(work / "reference", str(ckpt))
    print(f"reference run (uninterrupted, {ROUNDS} rounds): {time.perf_counter() - t0:.1f} s")
    totals = {"finished": 0, "intact": 0, "interrupted": 0, "round_match": 0, "problems": 0,
              "resumed": 0, "equal": 0}  # fmt: skip
    for trial in range(args.trials):
        root = work / f"runs{trial}"
        proc = subprocess.Popen(
            [sys.executable, __file__, "--driver", str(root), str(ckpt)],
            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
        )  # fmt: skip
        first = proc.stdout.readline().strip()  # the first run id: a job is under way
        delay = rng.uniform(0, args.max_delay)
        time.sleep(delay)
        worker = args.kill == "both" and trial % 2 == 1 and kill_worker(root)
        if worker:
            time.sleep(1.0)  # the server marks that run and starts its next job
        alive = proc.poll() is None
        if alive:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        seen = check(root)
        problems = len(seen["other"]) + (seen["finished"] - seen["intact"])
        if len(seen["interrupted"]) > 1 + worker:  # only the jobs under way can be cut short
            problems += 1
        match = sum(1 for _, r, e in seen["interrupted"] if r == e)
        totals["finished"] += seen["finished"]
        totals["intact"] += seen["intact"]
        totals["interrupted"] += len(seen["interrupted"])
        totals["round_match"] += match
        resumed = resume_all(root, [i for i, _, _ in seen["interrupted"]], expected)
        ok = [o for _, o in resumed if o in ("equal", "differs")]
        totals["resumed"] += len(ok)
        totals["equal"] += ok.count("equal")
        problems += len(resumed) - ok.count("equal")
        totals["problems"] += problems
        rounds = ", ".join(f"round {r} (events: {e})" for _, r, e in seen["interrupted"]) or "-"
        print(f"trial {trial}: {'a worker, then ' if worker else ''}the server killed after "
              f"{delay:.2f} s ({'while alive' if alive else 'after it ended'}"
              f", first run {first[-6:]}); finished {seen['finished']} (intact {seen['intact']}), "
              f"interrupted {len(seen['interrupted'])} at {rounds}, marked {seen['marked']}, "
              f"skipped dirs {seen['skipped']}, leftover .tmp {seen['tmp_files']}; resumed: "
              f"{', '.join(o for _, o in resumed) or '-'}")  # fmt: skip
    print(f"{args.trials} trials: {totals['finished']} finished runs, {totals['intact']} intact; "
          f"{totals['interrupted']} interrupted runs, {totals['round_match']} with status round = "
          f"last SAURound event; {totals['resumed']} of {totals['interrupted']} resumed to the end, "
          f"{totals['equal']} with weights equal to the uninterrupted run; "
          f"problems {totals['problems']}")  # fmt: skip
    return 1 if totals["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
