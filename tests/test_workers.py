"""Jobs in worker processes (the dashboard's runner): live views read from the run directory,
Stop through the run's stop file within one batch, a worker that dies (SIGKILL, a native fault)
ending only its own job, the server's death ending its workers, fair limits, owner-only control.

Budgets are tiny: 8x8 digits, a 400-image training subset, one epoch, a few SAU rounds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from sau_core.attacks import AttackSpec
from sau_core.data import DataSpec, Split
from sau_core.defenses.sau import SAUConfig
from sau_core.serving import AttackJob, JobRunner, OwnerLimit, PurifyJob, QueueFull, view_of
from sau_core.serving.runs import RunError, RunStore, process_alive
from sau_core.serving.workers import (
    STOP_FILE,
    EventTail,
    StopFile,
    exit_reason,
    request_stop,
)
from sau_core.train import default_train_config

DATA8 = DataSpec("digits", None, {"resolution": 8, "seed": 0})
SPEC = AttackSpec("badnets", target=0, poison_ratio=0.1)
WAIT = 240  # seconds: a busy 2-core machine, the fork server's first start included


@pytest.fixture(scope="module")
def tiny() -> Split:
    s = DATA8.load()
    return Split(s.train.subset(torch.arange(400)), s.test.subset(torch.arange(120)))


@pytest.fixture(scope="module")
def ckpt(tiny, tmp_path_factory) -> str:
    """A finished attack run made in a worker process: its directory is a checkpoint."""
    runner = JobRunner(RunStore(tmp_path_factory.mktemp("runs")))
    job = AttackJob(DATA8, "small_cnn", SPEC, default_train_config("digits", epochs=1))
    run_id = runner.submit(job, split=tiny)
    assert runner.wait(run_id, timeout=WAIT)
    view = runner.view(run_id)
    assert view.state == "finished", view.message
    assert len(view.epochs) == 1 and view.metrics is not None  # mirrored from the worker's files
    return str(runner.store.get(run_id).path)


def _until(predicate, timeout=WAIT) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _sau(**kw) -> SAUConfig:
    return SAUConfig(**{"rounds": 2, "batch_size": 64, "probe_size": 4, "eval_size": 0, **kw})


def _worker_pid(runner: JobRunner, run_id: str) -> int:
    assert _until(lambda: runner._jobs[run_id].process is not None)
    return runner._jobs[run_id].process.pid


def test_a_worker_process_runs_the_job_and_the_live_view_follows(ckpt, tiny, tmp_path):
    runner = JobRunner(RunStore(tmp_path))
    run_id = runner.submit(PurifyJob(ckpt, _sau(rounds=3), 0.2, attack=SPEC), split=tiny)
    assert _worker_pid(runner, run_id) != os.getpid()
    assert runner.wait(run_id, timeout=WAIT)
    live = runner.view(run_id)
    assert live.state == "finished", live.message
    assert [r["round"] for r in live.rounds] == [1, 2, 3] and live.probe is not None
    assert live.metrics["rounds_done"] == 3
    disk = view_of(runner.store.get(run_id))  # the same view from the files alone
    assert (disk.rounds, disk.step, disk.final) == (live.rounds, live.step, live.final)
    status = runner.store.get(run_id).status()
    assert status["owner"]["pid"] != os.getpid()  # the worker claimed the run
    assert not (runner.store.get(run_id).path / STOP_FILE).exists()


def test_stop_acts_within_one_batch_in_a_worker(ckpt, tiny, tmp_path):
    runner = JobRunner(RunStore(tmp_path))
    run_id = runner.submit(PurifyJob(ckpt, _sau(rounds=500), 0.2, attack=SPEC), split=tiny)
    assert _until(lambda: runner.view(run_id).step >= 2)
    asked = time.time()
    assert runner.stop(run_id)
    assert runner.wait(run_id, timeout=WAIT)
    view = runner.view(run_id)
    assert view.state == "stopped" and view.message == "stopped by the user"
    late = [e for e in runner.store.get(run_id).events()
            if e["event"] == "SAUBatch" and e["t"] > asked]  # fmt: skip
    assert len(late) <= 1  # the batch under way when the flag was set, no more
    assert view.metrics["stopped"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_a_dying_worker_fails_only_its_job(ckpt, tiny, tmp_path, sig):
    """SIGKILL (the out-of-memory killer) and SIGSEGV (a native fault) end the worker; the run
    is interrupted with the reason, Resume continues it, and the runner carries on."""
    runner = JobRunner(RunStore(tmp_path))
    run_id = runner.submit(PurifyJob(ckpt, _sau(rounds=500), 0.2, attack=SPEC), split=tiny)
    pid = _worker_pid(runner, run_id)
    # a round's state reaches disk just after its event: wait for the file, not the event, or
    # a kill in between leaves nothing to resume (on a loaded machine it did)
    assert _until(lambda: (runner.store.get(run_id).resume_round() or 0) >= 1)
    os.kill(pid, sig)
    assert runner.wait(run_id, timeout=WAIT)
    view = runner.view(run_id)
    assert view.state == "interrupted"
    assert (
        signal.Signals(sig).name in view.message and "Resume continues after round" in view.message
    )
    run = runner.store.get(run_id)
    assert run.status()["state"] == "interrupted" and run.resume_round() >= 1
    other = runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2), split=tiny)
    assert runner.wait(other, timeout=WAIT) and runner.view(other).state == "finished"
    runner.resume(run_id, split=tiny)
    assert _until(lambda: len(runner.view(run_id).rounds) >= 2)
    runner.stop(run_id)
    assert runner.wait(run_id, timeout=WAIT)
    assert runner.view(run_id).state == "stopped"


@pytest.mark.parametrize("defense", ["fp", "anp"])
def test_a_baseline_killed_in_its_worker_resumes_from_its_run_directory(ckpt, tiny, tmp_path,
                                                                         defense):  # fmt: skip
    """A defence other than SAU runs in a worker too: killed, its run is interrupted after its
    last saved round and Resume continues it to the end (FP: a pruned model being fine-tuned;
    ANP: masks, perturbations and their optimiser in one state)."""
    from sau_core.defenses import get_defense

    settings = get_defense(defense).config.from_dict({"rounds": 400, "batch_size": 64,
                                                      "eval_size": 50})  # fmt: skip
    runner = JobRunner(RunStore(tmp_path))
    run_id = runner.submit(PurifyJob(ckpt, settings, 0.2, attack=SPEC, defense=defense),
                           split=tiny)  # fmt: skip
    pid = _worker_pid(runner, run_id)
    assert _until(lambda: len(runner.view(run_id).rounds) >= 2)
    os.kill(pid, signal.SIGKILL)
    assert runner.wait(run_id, timeout=WAIT)
    assert runner.view(run_id).state == "interrupted"
    run = runner.store.get(run_id)
    saved = run.resume_round()
    assert saved >= 1 and run.resume_state().defense == defense
    runner.resume(run_id, split=tiny)
    assert _until(lambda: len(runner.view(run_id).rounds) > saved + 1)
    rounds = [r["round"] for r in runner.view(run_id).rounds]
    assert rounds == list(range(1, len(rounds) + 1))  # no round twice, none missing
    assert all(r["event"] == "DefenseRound" and r["defense"] == defense
               for r in runner.view(run_id).rounds)  # fmt: skip
    runner.stop(run_id)
    assert runner.wait(run_id, timeout=WAIT)
    view = runner.view(run_id)
    assert view.state == "stopped" and view.metrics["defense"] == defense


def test_the_servers_death_ends_its_workers(ckpt, tmp_path):
    """A server killed with SIGKILL takes its workers with it (no job runs on unseen), and the
    run then reads as interrupted."""
    script = textwrap.dedent(f"""
        import json, sys, time
        from sau_core.serving import JobRunner, PurifyJob
        from sau_core.serving.runs import RunStore
        from sau_core.defenses.sau import SAUConfig
        if __name__ == "__main__":
            runner = JobRunner(RunStore({str(tmp_path)!r}))
            cfg = SAUConfig(rounds=500, batch_size=64, probe_size=0, eval_size=0)
            run_id = runner.submit(PurifyJob({ckpt!r}, cfg, 0.2))
            while runner._jobs[run_id].process is None or runner.view(run_id).step < 1:
                time.sleep(0.05)
            print(json.dumps({{"run": run_id, "pid": runner._jobs[run_id].process.pid}}), flush=True)
            time.sleep(600)
    """)
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=os.getcwd())  # fmt: skip
    try:
        line = server.stdout.readline()
        assert line, "the server script printed nothing"
        started = json.loads(line)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)

        assert _until(lambda: not process_alive(started["pid"]), timeout=60)  # a zombie is gone
        run = RunStore(tmp_path).get(started["run"])
        assert run.status()["state"] == "interrupted"
    finally:
        if server.poll() is None:
            server.kill()


def test_a_session_may_queue_only_so_many_jobs(ckpt, tiny, tmp_path):
    runner = JobRunner(RunStore(tmp_path), max_per_owner=2, workers="thread")
    long = PurifyJob(ckpt, _sau(rounds=500), 0.2)
    running = runner.submit(long, split=tiny, owner="a")
    waiting = [runner.submit(long, split=tiny, owner="a") for _ in range(2)]
    with pytest.raises(OwnerLimit, match="already have 2 jobs waiting .*at most 2 per session"):
        runner.submit(long, split=tiny, owner="a")
    assert issubclass(OwnerLimit, QueueFull)  # pages that handle a full queue handle this too
    other = runner.submit(long, split=tiny, owner="b")  # the cap is per session
    assert runner.stop(waiting[0], owner="a")  # room again
    runner.submit(long, split=tiny, owner="a")
    for run_id in [running, *waiting, other]:
        runner.stop(run_id)
    assert _until(lambda: not runner.active())


def test_a_job_stops_at_the_time_limit(ckpt, tiny, tmp_path):
    runner = JobRunner(RunStore(tmp_path), time_limit=3.0)
    run_id = runner.submit(PurifyJob(ckpt, _sau(rounds=5000), 0.2), split=tiny)
    assert runner.wait(run_id, timeout=WAIT)
    view = runner.view(run_id)
    assert (
        view.state == "stopped" and view.message == "stopped at the time limit of 0.05 min per job"
    )
    with pytest.raises(ValueError, match="time_limit"):
        JobRunner(RunStore(tmp_path), time_limit=0)
    with pytest.raises(ValueError, match="max_per_owner"):
        JobRunner(RunStore(tmp_path), max_per_owner=0)
    with pytest.raises(ValueError, match="workers"):
        JobRunner(RunStore(tmp_path), workers="fork")


def test_only_the_owner_or_an_operator_stops_or_resumes(ckpt, tiny, tmp_path):
    runner = JobRunner(RunStore(tmp_path), workers="thread")
    run_id = runner.submit(PurifyJob(ckpt, _sau(rounds=500), 0.2), split=tiny, owner="alice")
    assert _until(lambda: runner.view(run_id).step >= 1)
    with pytest.raises(RunError, match="only the session that started"):
        runner.stop(run_id, owner="mallory")
    assert runner.is_active(run_id)
    assert runner.stop(run_id, owner=None, reason="cancelled by the operator")  # the operator
    assert runner.wait(run_id, timeout=WAIT)
    assert runner.view(run_id).message == "cancelled by the operator"
    run = runner.store.get(run_id)
    run.update_status(state="interrupted")
    with pytest.raises(RunError, match="only the session that started"):
        runner.resume(run_id, split=tiny, owner="mallory")
    runner.resume(run_id, split=tiny, owner="mallory", operator=True)
    runner.stop(run_id)
    assert runner.wait(run_id, timeout=WAIT)


def test_the_operator_stops_a_waiting_job_through_its_stop_file(ckpt, tiny, tmp_path):
    runner = JobRunner(RunStore(tmp_path), max_active=1, workers="thread")
    first = runner.submit(PurifyJob(ckpt, _sau(rounds=500), 0.2), split=tiny, owner="a")
    second = runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2), split=tiny, owner="b")
    request_stop(runner.store.get(second).path, "cancelled by the operator")  # sau jobs stop
    runner.stop(first)
    assert runner.wait(second, timeout=WAIT)
    view = runner.view(second)
    assert view.state == "stopped" and view.message == (
        "stopped before it started (cancelled by the operator)"
    )
    assert not (runner.store.get(second).path / STOP_FILE).exists()


def test_stop_file_and_event_tail(tmp_path):
    stop = StopFile(tmp_path)
    assert not stop.is_set() and stop.reason() == "stopped by the user"
    stop.set("  stopped\nat the   limit ")
    assert stop.is_set() and stop.reason() == "stopped at the limit"
    stop.clear()
    assert not stop.is_set()
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.read() == []
    path.write_bytes(b'{"event": "A"}\n{"event": "B"}\n{"event": "C"')  # C: torn, still written
    assert [r["event"] for r in tail.read()] == ["A", "B"]
    with open(path, "ab") as f:
        f.write(b'}\nnot json\n[1]\n{"event": "D"}\n')
    assert [r["event"] for r in tail.read()] == ["C", "D"]
    assert tail.read() == []


def test_process_alive():
    assert process_alive(os.getpid())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    assert _until(lambda: not process_alive(proc.pid), timeout=60)  # a zombie until waited for
    proc.wait()
    assert not process_alive(proc.pid)
    assert not process_alive(os.getpid(), start="not its start time")


def test_exit_reasons():
    assert "SIGKILL" in exit_reason(-9) and "out of memory" in exit_reason(-9)
    assert "SIGSEGV" in exit_reason(-11)
    assert exit_reason(3) == "the worker process exited with code 3"


def test_a_worker_never_runs_the_callers_main_script(ckpt, tiny, tmp_path, monkeypatch):
    """Under Streamlit ``sys.modules['__main__']`` is the page script; multiprocessing would run
    it again in every new process (a second job runner inside the worker). Workers skip it."""
    import types

    marker = tmp_path / "main-ran"
    script = tmp_path / "page.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    page.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", page)
    runner = JobRunner(RunStore(tmp_path / "runs"))
    run_id = runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2), split=tiny)
    assert runner.wait(run_id, timeout=WAIT)
    assert runner.view(run_id).state == "finished", runner.view(run_id).message
    assert not marker.exists()


def test_a_killed_attack_training_is_interrupted_and_resumes(tiny, tmp_path):
    runner = JobRunner(RunStore(tmp_path))
    job = AttackJob(DATA8, "small_cnn", SPEC, default_train_config("digits", epochs=200))
    run_id = runner.submit(job, split=tiny)
    pid = _worker_pid(runner, run_id)
    assert _until(lambda: len(runner.view(run_id).epochs) >= 1)
    os.kill(pid, signal.SIGKILL)
    assert runner.wait(run_id, timeout=WAIT)
    view = runner.view(run_id)
    assert view.state == "interrupted" and "Resume continues after epoch" in view.message
    runner.resume(run_id, split=tiny)
    assert _until(lambda: runner.view(run_id).state == "running")
    done = runner.store.get(run_id).resume_round() or 0
    assert _until(lambda: len(runner.view(run_id).epochs) > done)
    runner.stop(run_id)
    assert runner.wait(run_id, timeout=WAIT) and runner.view(run_id).state == "stopped"
