"""Crash safety: a process killed with SIGKILL mid-run leaves finished runs intact.

The driver of ``bench/bench_faults.py`` runs digits purify jobs one after the other in a
subprocess; it is killed once the second job has completed a round. The first run must be
finished and load as a checkpoint; the second must read as interrupted with its last completed
round, and resume from it to the end. (The bench repeats this at random kill times.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.bench_faults import ROUNDS, check, resume_all
from sau_core.data import DataSpec, load_digits
from sau_core.io.checkpoint import save_checkpoint
from sau_core.models import create_model
from sau_core.serving.runs import RunStore

REPO = Path(__file__).resolve().parent.parent


def _rounds_done(run_dir: Path) -> int:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return 0
    return sum('"event": "SAURound"' in line for line in path.read_text().splitlines())


def test_sigkill_mid_run_leaves_finished_runs_intact(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, create_model("small_cnn", load_digits(resolution=8).info, seed=0),
                    {"data": DataSpec("digits", None, {"resolution": 8}).to_dict()})  # fmt: skip
    root = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench/bench_faults.py"), "--driver", str(root), str(ckpt)],
        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    try:
        proc.stdout.readline()
        second = proc.stdout.readline().strip()  # submitted once the first job ended
        assert second, "the driver ended early"
        deadline = time.time() + 120
        while _rounds_done(root / second) < 1:
            assert time.time() < deadline and proc.poll() is None, "no round completed"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    seen = check(root)
    assert seen["finished"] == seen["intact"] == 1
    assert seen["other"] == []
    [(run_id, status_round, event_round)] = seen["interrupted"]
    assert run_id == second
    assert event_round is not None and event_round >= 1
    assert status_round == event_round  # mark_interrupted takes it from the events
    assert seen["marked"] == 1
    status = json.loads((root / second / "status.json").read_text())
    assert status["state"] == "interrupted"
    assert RunStore(root).get(second).status()["state"] == "interrupted"
    # the state is saved just after a round's events: a kill in between resumes one round earlier
    assert (RunStore(root).get(second).resume_round() or 0) in (event_round, event_round - 1)
    # resumed in this process (a server started again), it runs to the end
    assert resume_all(root, [second], None) == [(second, "equal")]
    run = RunStore(root).get(second)
    assert run.status()["state"] == "finished" and run.metrics()["rounds_done"] == ROUNDS


@pytest.mark.parametrize("junk", [b"", b"{", b"\x00" * 10, b"[" * 50_000])
def test_torn_status_after_a_crash_is_skipped(tmp_path: Path, junk: bytes) -> None:
    store = RunStore(tmp_path)
    good = store.create("purify", {}, "good")
    torn = store.create("purify", {}, "torn")
    (torn.path / "status.json").write_bytes(junk)
    with pytest.warns(UserWarning, match=torn.id):
        assert [r.id for r in store.list()] == [good.id]
