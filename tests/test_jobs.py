"""The job runner: attack and purify jobs in a worker thread, live views, stop, queue, failures.

Budgets are tiny: 8x8 digits, a 400-image training subset, one epoch, one or two SAU rounds.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

from sau_core.attacks import AttackSpec
from sau_core.data import DataSpec, Split
from sau_core.defenses.sau import SAUConfig
from sau_core.events import SAUBatch
from sau_core.io.checkpoint import load_checkpoint
from sau_core.serving import (
    MAX_BATCH_POINTS,
    AttackJob,
    JobRunner,
    JobView,
    LiveState,
    PurifyJob,
    QueueFull,
    import_checkpoint,
    job_from_config,
    view_of,
)
from sau_core.serving.runs import RESUME_FILE, Run, RunError, RunStore
from sau_core.train import default_train_config

DATA8 = DataSpec("digits", None, {"resolution": 8, "seed": 0})
SPEC = AttackSpec("badnets", target=0, poison_ratio=0.1)


@pytest.fixture(scope="module")
def tiny() -> Split:
    s = DATA8.load()
    return Split(s.train.subset(torch.arange(400)), s.test.subset(torch.arange(120)))


@pytest.fixture(scope="module")
def attacked(tiny, tmp_path_factory):
    """One finished attack run (1 epoch), shared by the purify tests."""
    runner = JobRunner(RunStore(tmp_path_factory.mktemp("runs")))
    job = AttackJob(DATA8, "small_cnn", SPEC, default_train_config("digits", epochs=1))
    run_id = runner.submit(job, label="tiny", split=tiny)
    assert runner.wait(run_id, timeout=120)
    return runner, run_id


def _wait_for(predicate, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _sau(**kw) -> SAUConfig:
    return SAUConfig(**{"rounds": 2, "batch_size": 64, "probe_size": 4, "eval_size": 0, **kw})


# ------------------------------------------------------------------------------------ attack
def test_attack_job_runs_to_completion(attacked):
    runner, run_id = attacked
    view = runner.view(run_id)
    assert view.state == "finished" and view.kind == "attack"
    assert view.device.startswith("cpu") or view.device.startswith("cuda")
    assert len(view.epochs) == 1 and view.step == view.total_steps == 7  # 400 / 64
    assert view.progress().fraction == 1.0 and view.progress().eta == 0.0
    assert view.metrics["asr"] is not None and 0 <= view.metrics["acc"] <= 1
    run = runner.store.get(run_id)
    status = run.status()
    assert status["state"] == "finished" and status["ended"] and status["round"] == 1
    ckpt = load_checkpoint(run.path)  # the run directory is a checkpoint
    assert ckpt.sidecar.attack_spec().name == "badnets"
    kinds = [e["event"] for e in run.events()]
    assert kinds[0] == "Started" and kinds[-1] == "Finished" and kinds.count("TrainBatch") == 7


def test_view_from_disk_matches_the_live_view(attacked):
    runner, run_id = attacked
    live = runner.view(run_id)
    disk = view_of(runner.store.get(run_id))
    assert disk.state == live.state and disk.epochs == live.epochs
    assert disk.batches == live.batches and disk.metrics == live.metrics
    assert disk.t_started == live.t_started and disk.device == live.device


def test_attack_job_loads_its_data_when_no_split_is_given(tmp_path):
    runner = JobRunner(RunStore(tmp_path))
    train = default_train_config("digits", epochs=1, batch_size=512)
    run_id = runner.submit(AttackJob(DATA8, "small_cnn", SPEC, train))
    assert runner.wait(run_id, timeout=120)
    view = runner.view(run_id)
    assert view.state == "finished", view.message
    assert view.step == 3  # 1347 training images at batch 512


# ------------------------------------------------------------------------------------ purify
def test_purify_job_runs_to_completion(attacked, tiny):
    runner, attack_id = attacked
    ckpt = str(runner.store.get(attack_id).path)
    job = PurifyJob(ckpt, _sau(), clean_ratio=0.2, attack=SPEC, data=DATA8)
    run_id = runner.submit(job, split=tiny)
    assert runner.wait(run_id, timeout=120)
    view = runner.view(run_id)
    assert view.state == "finished", view.message
    assert [r["round"] for r in view.rounds] == [1, 2]
    assert view.before is not None and view.before["asr"] is not None
    assert view.probe_rounds == [0, 1, 2] and view.probe.round == 2 and len(view.probe.y) == 4
    m = view.metrics
    assert set(m) >= {"before", "after", "der"} and 0 <= m["der"] <= 1
    assert m["before"]["asr"] == pytest.approx(view.before["asr"])  # same full test set
    run = runner.store.get(run_id)
    assert run.probe_rounds() == [0, 1, 2] and run.has_checkpoint()
    disk = view_of(run)
    assert disk.rounds == view.rounds and disk.before == view.before
    assert torch.equal(disk.probe.delta, view.probe.delta)


def test_purify_without_trigger_has_no_asr(attacked, tiny):
    runner, attack_id = attacked
    job = PurifyJob(str(runner.store.get(attack_id).path), _sau(rounds=1), 0.2, data=DATA8)
    run_id = runner.submit(job, split=tiny)
    assert runner.wait(run_id, timeout=120)
    view = runner.view(run_id)
    assert view.state == "finished", view.message
    assert view.before["asr"] is None and view.rounds[0]["asr"] is None
    assert view.metrics["der"] is None


def test_stop_ends_a_purify_job_early(attacked, tiny):
    runner, attack_id = attacked
    job = PurifyJob(str(runner.store.get(attack_id).path), _sau(rounds=500), 0.2, attack=SPEC)
    run_id = runner.submit(job, split=tiny)
    assert _wait_for(lambda: len(runner.view(run_id).rounds) >= 1)
    assert runner.stop(run_id)
    assert runner.wait(run_id, timeout=60)
    view = runner.view(run_id)
    assert view.state == "stopped" and view.message == "stopped by the user"
    assert view.metrics["stopped"] and view.metrics["rounds_done"] < 500
    assert runner.store.get(run_id).status()["state"] == "stopped"
    assert not runner.stop(run_id)  # already over


def test_queued_job_waits_for_a_free_slot_and_can_be_stopped(attacked, tiny, tmp_path):
    _, attack_id = attacked
    runner = JobRunner(RunStore(tmp_path), max_active=1)
    ckpt = str(attacked[0].store.get(attack_id).path)
    first = runner.submit(PurifyJob(ckpt, _sau(rounds=500), 0.2), split=tiny)
    assert _wait_for(lambda: runner.view(first).state == "running")
    second = runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2), split=tiny)
    time.sleep(0.3)
    assert runner.view(second).state == "queued"
    assert runner.store.get(second).status()["state"] == "queued"
    assert set(runner.active()) == {first, second}
    runner.stop(second)
    assert runner.wait(second, timeout=10)
    assert runner.view(second).message == "stopped before it started"
    runner.stop(first)
    assert runner.wait(first, timeout=60)


# ------------------------------------------------------------------------------- fair queue
def _long_job(runner, ckpt, tiny, owner):
    """A job that holds the one slot until it is stopped."""
    run_id = runner.submit(PurifyJob(ckpt, _sau(rounds=500), 0.2), split=tiny, owner=owner)
    assert _wait_for(lambda: runner.view(run_id).state == "running")
    return run_id


def test_a_second_owner_goes_before_the_first_owners_backlog(attacked, tiny, tmp_path):
    _, attack_id = attacked
    ckpt = str(attacked[0].store.get(attack_id).path)
    runner = JobRunner(RunStore(tmp_path), max_active=1)
    a1 = _long_job(runner, ckpt, tiny, "alice")
    a2, a3 = (runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2), split=tiny, owner="alice")
              for _ in range(2))  # fmt: skip
    b1 = runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2), split=tiny, owner="bob")
    # bob has nothing running: his job is next although alice queued two before it
    assert [runner.position(r) for r in (a1, a2, a3, b1)] == [None, 1, 2, 0]
    assert [runner.view(r).queue_position for r in (a1, a2, a3, b1)] == [None, 1, 2, 0]
    assert runner.queued() == 3 and runner.view(a2).state == "queued"
    runner.stop(a1)
    for run_id in (a1, a2, a3, b1):
        assert runner.wait(run_id, timeout=120)
    assert [runner.view(r).state for r in (a2, a3, b1)] == ["finished"] * 3
    started = sorted((a2, a3, b1), key=lambda r: runner.view(r).t_started)
    assert started == [b1, a2, a3]  # bob's job ran second overall, not fourth
    assert runner.position(b1) is None and runner.view(b1).queue_position is None


def test_the_queue_is_bounded(attacked, tiny, tmp_path):
    _, attack_id = attacked
    ckpt = str(attacked[0].store.get(attack_id).path)
    store = RunStore(tmp_path)
    runner = JobRunner(store, max_active=1, max_queued=2)
    first = _long_job(runner, ckpt, tiny, "a")
    waiting = [runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2), split=tiny, owner="b")
               for _ in range(2)]  # fmt: skip
    with pytest.raises(QueueFull, match="the queue is full, try again in a minute"):
        runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2), split=tiny, owner="c")
    assert len(store.list()) == 3  # the refused job left no run behind
    runner.stop(waiting[0])  # a stopped waiting job frees its place at once
    assert runner.view(waiting[0]).state == "stopped" and runner.queued() == 1
    third = runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2), split=tiny, owner="c")
    # b and c run nothing and were never served: first come, first served
    assert runner.position(waiting[1]) == 0 and runner.position(third) == 1
    for run_id in (waiting[1], third):
        runner.stop(run_id)
    runner.stop(first)
    assert runner.wait(first, timeout=60) and not runner.active()


def test_runs_are_listed_per_owner(attacked, tiny, tmp_path):
    _, attack_id = attacked
    ckpt = str(attacked[0].store.get(attack_id).path)
    store = RunStore(tmp_path)
    runner = JobRunner(store)
    job = PurifyJob(ckpt, _sau(rounds=1), 0.2)
    mine = [runner.submit(job, split=tiny, owner="s1") for _ in range(2)]
    theirs = runner.submit(job, split=tiny, owner="s2")
    cli = runner.submit(job, split=tiny)
    for run_id in (*mine, theirs, cli):
        assert runner.wait(run_id, timeout=120)
    assert {r.id for r in store.list(owner="s1")} == set(mine)
    assert [r.id for r in runner.runs("s2")] == [theirs]
    assert [r.id for r in store.list(owner="")] == [cli]
    assert len(store.list()) == 4
    assert json.loads((store.get(theirs).path / "config.json").read_text())["owner"] == "s2"
    with pytest.raises(ValueError, match="session id"):  # never free text
        runner.submit(job, split=tiny, owner="<b>me</b>")
    assert len(store.list()) == 4


def test_concurrent_jobs_per_device_are_configurable(tmp_path):
    store = RunStore(tmp_path)
    assert JobRunner(store).limit("cpu") == 1
    assert JobRunner(store).limit("cuda") == max(1, torch.cuda.device_count())
    assert JobRunner(store, {"cpu": 3}).limit("cpu") == 3
    assert JobRunner(store, 2).limit("cuda") == 2
    for bad in (0, {"cpu": 0}):
        with pytest.raises(ValueError, match="max_active"):
            JobRunner(store, bad)
    with pytest.raises(ValueError, match="max_queued"):
        JobRunner(store, max_queued=0)
    with pytest.raises(ValueError, match="gpus"):
        JobRunner(store, gpus=-1)


def _fake_purify(monkeypatch, seen: list, release: threading.Event) -> None:
    """Purify jobs record the device they were given and hold their slot until ``release``."""
    import sau_core.serving.work as jobs

    def hold(job, run, callback, stop, split, resume=None):
        seen.append(job.device)
        release.wait(30)
        return {}, False

    monkeypatch.setattr(jobs, "_purify", hold)


def _until(cond, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def test_cuda_jobs_spread_over_the_gpus(attacked, tiny, tmp_path, monkeypatch):
    """With two GPUs (the placement only; nothing runs on a GPU here) two CUDA jobs run at once,
    one on each GPU; the third waits and takes the GPU that frees first."""
    seen, release = [], threading.Event()
    _fake_purify(monkeypatch, seen, release)
    runner = JobRunner(RunStore(tmp_path), gpus=2, workers="thread")
    assert runner.limit("cuda") == 2  # the default: one job per GPU
    ckpt = str(attacked[0].store.get(attacked[1]).path)
    job = PurifyJob(ckpt, _sau(rounds=1), 0.2, device="cuda")
    ids = [runner.submit(job, split=tiny, owner=f"s{i}") for i in range(3)]
    assert _until(lambda: len(seen) == 2)
    assert sorted(seen) == ["cuda:0", "cuda:1"]
    assert runner.position(ids[2]) == 0  # both GPUs are taken
    release.set()
    assert all(runner.wait(i, timeout=30) for i in ids)
    assert seen[2] in ("cuda:0", "cuda:1") and len(seen) == 3


def test_a_job_that_names_a_gpu_waits_for_that_gpu(attacked, tiny, tmp_path, monkeypatch):
    seen, release = [], threading.Event()
    _fake_purify(monkeypatch, seen, release)
    runner = JobRunner(RunStore(tmp_path), {"cuda": 2}, gpus=2, workers="thread")
    ckpt = str(attacked[0].store.get(attacked[1]).path)
    first = runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2, device="cuda:1"), split=tiny)
    assert _until(lambda: seen == ["cuda:1"])
    pinned = runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2, device="cuda:1"), split=tiny)
    anywhere = runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2, device="cuda"), split=tiny)
    assert _until(lambda: len(seen) == 2)
    assert seen[1] == "cuda:0"  # the job free to go anywhere goes ahead, on the free GPU
    assert runner.position(pinned) == 0
    release.set()
    assert all(runner.wait(i, timeout=30) for i in (first, pinned, anywhere))
    assert seen[2] == "cuda:1"


# ------------------------------------------------------------------------------------ resume
class _Crash(BaseException):
    """Ends a worker thread the way a killed process ends its job: nothing is cleaned up."""


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _crash_at(monkeypatch, round_: int, nth_batch: int) -> None:
    """Make the worker die when it writes the ``nth_batch``-th SAUBatch line of ``round_``."""
    original, seen = Run.append_event, [0]

    def append_event(self, event, t=None):
        if isinstance(event, SAUBatch) and event.round == round_:
            seen[0] += 1
            if seen[0] == nth_batch:
                raise _Crash
        return original(self, event, t)

    monkeypatch.setattr(Run, "append_event", append_event)


@pytest.fixture(scope="module")
def straight(attacked, tiny):
    """The reference: a 3-round purify job that nothing interrupts (one thread, like the
    resumed runs: the thread count changes the order of float sums)."""
    torch.set_num_threads(1)
    store, attack_id = attacked[0].store, attacked[1]
    runner = JobRunner(store, workers="thread")  # this process's one thread
    job = PurifyJob(str(runner.store.get(attack_id).path), _sau(rounds=3), 0.2, attack=SPEC)
    run_id = runner.submit(job, split=tiny)
    assert runner.wait(run_id, timeout=120)
    return job, runner.store.get(run_id)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("crash, resumed_from", [((2, 2), 1), ((1, 1), 0)])
def test_resume_an_interrupted_purify_run(straight, tiny, tmp_path, monkeypatch, crash,
                                          resumed_from):  # fmt: skip
    torch.set_num_threads(1)
    job, reference = straight
    runner = JobRunner(RunStore(tmp_path), workers="thread")  # patched functions
    with monkeypatch.context() as m:
        _crash_at(m, *crash)
        run_id = runner.submit(job, split=tiny)
        assert runner.wait(run_id, timeout=120)
    run = runner.store.get(run_id)
    assert run.resume_round() == (resumed_from or None)
    # the process died: its pid is gone (what a restarted server sees, then marks)
    run.update_status(owner={"host": socket.gethostname(), "pid": _dead_pid()})
    assert runner.store.mark_interrupted() == [run_id]
    assert view_of(run).state == "interrupted"

    assert runner.resume(run_id, split=tiny) == run_id
    with pytest.raises(RunError, match="already running|only an interrupted"):
        runner.resume(run_id, split=tiny)
    assert runner.wait(run_id, timeout=120)
    view = runner.view(run_id)
    assert view.state == "finished", view.message
    status = run.status()
    assert status["state"] == "finished" and status["message"] == "" and status["round"] == 3
    assert status["resumed"] and status["ended"]
    kinds = [(e["event"], e.get("round")) for e in run.events()]
    assert [r for k, r in kinds if k == "SAURound"] == [1, 2, 3]  # no round twice
    assert ("Resumed", resumed_from) in kinds and kinds[-1][0] == "Finished"
    steps = [e["step"] for e in run.events() if e["event"] == "SAUBatch"]
    assert steps == list(range(1, 7))  # 80 clean images, 2 batches per round
    assert [r["round"] for r in view.rounds] == [1, 2, 3] and view.probe_rounds == [0, 1, 2, 3]
    assert view.step0 == 2 * resumed_from and view.progress().fraction == 1.0
    assert not (run.path / RESUME_FILE).exists()  # an ended run keeps no resume state
    assert run.metrics()["rounds_done"] == 3
    # the same numbers as the run nothing interrupted
    a, b = load_checkpoint(reference.path).model, load_checkpoint(run.path).model
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert run.metrics()["after"] == reference.metrics()["after"]
    assert view_of(run).rounds == view.rounds


def test_only_interrupted_purify_runs_resume(attacked, straight, tmp_path):
    runner, attack_id = attacked
    _, finished = straight
    with pytest.raises(RunError, match="is finished; only an interrupted"):
        runner.resume(attack_id)
    imported = RunStore(tmp_path).create("import", {"kind": "import"})
    with pytest.raises(RunError, match="only purify and attack runs"):
        JobRunner(RunStore(tmp_path)).resume(imported.id)
    with pytest.raises(RunError, match="is finished; only an interrupted"):
        runner.resume(finished.id)
    with pytest.raises(RunError, match="not a run id"):
        runner.resume("../../etc")
    store = RunStore(tmp_path)
    run = store.create("purify", {"kind": "purify", "checkpoint": str(tmp_path / "gone")})
    run.update_status(state="running", owner={"host": socket.gethostname(), "pid": _dead_pid()})
    with pytest.raises(ValueError, match="no checkpoint"):
        JobRunner(store).resume(run.id)


# ------------------------------------------------------------------------------- exceptions
def test_failing_job_is_recorded_and_the_runner_carries_on(attacked, tiny, tmp_path):
    _, attack_id = attacked
    runner = JobRunner(RunStore(tmp_path))
    ckpt = str(attacked[0].store.get(attack_id).path)
    bad = DataSpec("digits", None, {"resolution": 16})  # the model wants 8x8 images
    run_id = runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2, data=bad))
    assert runner.wait(run_id, timeout=60)
    view = runner.view(run_id)
    assert view.state == "failed"
    assert "expects 10 classes of (1, 8, 8) images" in view.message
    run = runner.store.get(run_id)
    assert "Traceback" in (run.path / "error.txt").read_text()
    assert run.status()["state"] == "failed"
    ok = runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2), split=tiny)
    assert runner.wait(ok, timeout=60) and runner.view(ok).state == "finished"


def test_out_of_memory_fails_the_job_with_a_hint_and_frees_the_cache(
    attacked, tiny, tmp_path, monkeypatch
):
    import sau_core.serving.work as jobs

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    freed = []
    monkeypatch.setattr(jobs, "purify_checkpoint", oom)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(1))
    runner = JobRunner(RunStore(tmp_path), workers="thread")  # patched functions
    ckpt = str(attacked[0].store.get(attacked[1]).path)
    run_id = runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2), split=tiny)
    assert runner.wait(run_id, timeout=60)
    view = runner.view(run_id)
    assert view.state == "failed"
    assert "ran out of memory" in view.message and "Tried to allocate 20.00 GiB" in view.message
    assert "smaller SAU batch size (now 64)" in view.message
    assert runner.store.get(run_id).status()["message"] == view.message
    assert freed  # the CUDA cache was handed back when the job ended
    monkeypatch.undo()
    ok = runner.submit(PurifyJob(ckpt, _sau(rounds=1), 0.2), split=tiny)  # the runner carries on
    assert runner.wait(ok, timeout=60) and runner.view(ok).state == "finished"


def test_failure_messages():
    from sau_core.serving import failure_message, is_out_of_memory

    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert failure_message(ValueError("bad\nsecond line")) == "ValueError: bad"
    train = AttackJob(train=default_train_config("digits", batch_size=512))
    assert "training batch size (now 512)" in failure_message(torch.OutOfMemoryError("x"), train)


def test_bad_jobs_are_refused_before_a_run_exists(tmp_path):
    store = RunStore(tmp_path)
    runner = JobRunner(store)
    with pytest.raises(ValueError, match="unknown model"):
        runner.submit(AttackJob(arch="alexnet"))
    with pytest.raises(ValueError, match="no checkpoint"):
        runner.submit(PurifyJob(str(tmp_path / "missing")))
    with pytest.raises(ValueError, match="clean ratio"):
        runner.submit(PurifyJob(str(tmp_path), clean_ratio=0.0))
    with pytest.raises(TypeError):
        runner.submit({"kind": "attack"})
    assert store.list() == []


def test_unknown_attack_fails_the_run_with_a_clear_message(tmp_path, tiny):
    runner = JobRunner(RunStore(tmp_path))
    run_id = runner.submit(AttackJob(DATA8, attack=AttackSpec("nope")), split=tiny)
    assert runner.wait(run_id, timeout=30)
    assert runner.view(run_id).state == "failed"
    assert "unknown attack 'nope'" in runner.view(run_id).message


# ---------------------------------------------------------------------------- plain pieces
def test_jobs_round_trip_through_json():
    a = AttackJob(DATA8, "small_cnn", SPEC, default_train_config("digits", epochs=2), "cpu")
    assert job_from_config(json.loads(json.dumps(a.to_dict()))) == a
    p = PurifyJob("runs/x", _sau(), 0.1, 3, True, SPEC, DATA8, None)
    assert job_from_config(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ValueError, match="not a job"):
        job_from_config({"kind": "bake"})


def test_live_state_thins_batches_and_keeps_order():
    live = LiveState("r", "purify")
    live.apply({"event": "Started", "total_steps": 10_000, "device": "cpu", "t": 0.0})
    for step in range(1, 10_001):
        live.apply({"event": "SAUBatch", "step": step, "round": 1, "loss": 1.0, "t": float(step)})
    view = live.view()
    steps = [b["step"] for b in view.batches]
    assert len(steps) <= MAX_BATCH_POINTS and steps == sorted(steps)
    assert steps[-1] >= 10_000 - 8 and view.step == 10_000
    gaps = {b - a for a, b in zip(steps, steps[1:], strict=False)}
    assert len(gaps) == 1  # evenly spaced


def test_live_state_is_safe_to_read_while_written():
    live = LiveState("r", "attack")
    live.apply({"event": "Started", "total_steps": 50_000, "device": "cpu", "t": 0.0})
    errors = []

    def write():
        for step in range(1, 50_001):
            live.apply({"event": "TrainBatch", "step": step, "loss": 0.5, "t": 1.0})

    thread = threading.Thread(target=write)
    thread.start()
    while thread.is_alive():
        view = live.view()
        steps = [b["step"] for b in view.batches]
        if steps != sorted(steps):
            errors.append(steps)
    thread.join()
    assert not errors and live.view().step == 50_000


def _view(**kw) -> JobView:
    base = dict(run_id="r", kind="purify", state="running", message="", device="cpu", step=10,
                total_steps=40, t_started=100.0, t_last=110.0, t_ended=None, epochs=[],
                rounds=[], batches=[], before=None, final=None, probe=None, probe_rounds=[])  # fmt: skip
    return JobView(**{**base, **kw})


def test_progress_extrapolates_the_step_rate():
    p = _view().progress(now=110.0)
    assert p.fraction == 0.25 and p.elapsed == 10.0 and p.eta == pytest.approx(30.0)
    # time since the last step counts against the ETA
    assert _view().progress(now=115.0).eta == pytest.approx(25.0)
    assert _view(step=0, t_last=100.0).progress(now=101.0).eta is None
    done = _view(state="finished", t_ended=150.0).progress(now=999.0)
    assert (done.fraction, done.elapsed, done.eta) == (1.0, 50.0, 0.0)
    queued = _view(state="queued", t_started=None).progress()
    assert queued.fraction == 0.0 and queued.eta is None


# ---------------------------------------------------------------------------------- uploads
def test_import_a_bare_state_dict_with_named_architecture(attacked, tiny, tmp_path):
    runner, attack_id = attacked
    src = runner.store.get(attack_id).path
    store = RunStore(tmp_path)
    torch.save(load_checkpoint(src).model.state_dict(), tmp_path / "w.pt")
    run = import_checkpoint(store, (tmp_path / "w.pt").read_bytes(), "my model.pt",
                            arch="small_cnn", data=DATA8, attack=SPEC, split=tiny)  # fmt: skip
    assert run.kind == "import" and run.status()["state"] == "finished" and run.has_checkpoint()
    assert run.metrics()["asr"] == pytest.approx(runner.view(attack_id).metrics["asr"], abs=0.05)
    assert load_checkpoint(run.path).sidecar.extra["imported_from"] == "my model.pt"


def test_import_with_its_sidecar(attacked, tiny, tmp_path):
    runner, attack_id = attacked
    src = runner.store.get(attack_id).path
    run = import_checkpoint(RunStore(tmp_path), (src / "model.safetensors").read_bytes(),
                            "model.safetensors", sidecar=(src / "checkpoint.json").read_bytes(),
                            split=tiny)  # fmt: skip
    side = load_checkpoint(run.path).sidecar
    assert side.attack["name"] == "badnets" and side.data_spec().name == "digits"
    assert run.metrics()["asr"] is not None  # the trigger came from the sidecar


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"filename": "x.pkl"}, "upload a .safetensors"),
        ({"weights": b"not a tensor file"}, "not a valid safetensors"),
        ({"arch": "resnet18"}, "does not match architecture 'resnet18'"),
        ({"arch": "alexnet"}, "unknown model"),
        ({"sidecar": b"{]"}, "not valid JSON"),
        ({"sidecar": b"{}", "arch": None, "data": None}, "has no 'arch'"),
        ({"data": None}, "name the data set"),
    ],
)
def test_import_refuses_what_does_not_fit(attacked, tiny, tmp_path, kwargs, message):
    runner, attack_id = attacked
    src = runner.store.get(attack_id).path
    args = {"weights": (src / "model.safetensors").read_bytes(), "filename": "model.safetensors",
            "arch": "small_cnn", "data": DATA8, "split": tiny, **kwargs}  # fmt: skip
    store = RunStore(tmp_path)
    with pytest.raises(ValueError, match=message):
        import_checkpoint(store, args.pop("weights"), args.pop("filename"), **args)
    assert store.list() == []  # nothing half-made is left behind


# ----------------------------------------------------------- one set of defaults per data set
def test_jobs_take_the_data_sets_defaults(attacked, tmp_path):
    """A job that leaves a setting open gets its data set's defaults (sau_core.lab.recipes), the
    same the CLI and the dashboard use, and config.json records the numbers."""
    from sau_core.defenses.sau import default_sau_config
    from sau_core.lab.recipes import recipe

    assert AttackJob().arch == recipe("digits").arch
    assert AttackJob(DataSpec("cifar10")).arch == recipe("cifar10").arch
    assert AttackJob(train=None).resolved().train == default_train_config("digits")
    source, attack_id = attacked
    ckpt = str(source.store.get(attack_id).path)
    job = PurifyJob(checkpoint=ckpt).resolved()
    assert (
        job.settings == default_sau_config("digits")
        and job.clean_ratio == recipe("digits").clean_ratio
    )
    runner = JobRunner(RunStore(tmp_path))
    run_id = runner.submit(PurifyJob(checkpoint=ckpt, settings=_sau(rounds=1)))
    runner.stop(run_id)
    assert runner.wait(run_id, timeout=120)
    saved = RunStore(tmp_path).get(run_id).config()["job"]
    assert saved["clean_ratio"] == recipe("digits").clean_ratio
    assert saved["sau"]["rounds"] == 1


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "cifar10", "kwargs": {"download": True}}, "'download' is not one of them"),
        ({"name": "digits", "kwargs": {"root": "/etc"}}, "'root' is not one of them"),
        ({"name": "digits", "kwargs": {"resolution": "../../etc"}}, "must be a number"),
        ({"name": "toaster"}, "unknown data set 'toaster'"),
    ],
)
def test_a_crafted_sidecar_cannot_download_or_reach_a_path(attacked, tmp_path, monkeypatch,
                                                           data, message):  # fmt: skip
    """The sidecar's data-set arguments are an allowlist: one line, no traceback, no data/
    folder made, no network asked for, nothing saved."""
    runner, attack_id = attacked
    src = runner.store.get(attack_id).path
    side = json.loads((src / "checkpoint.json").read_text())
    side["data"] = data
    monkeypatch.chdir(tmp_path)
    store = RunStore(tmp_path / "runs")
    with pytest.raises(ValueError, match=message) as err:
        import_checkpoint(store, (src / "model.safetensors").read_bytes(), "model.safetensors",
                          sidecar=json.dumps(side).encode())  # fmt: skip
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    assert not (tmp_path / "data").exists() and store.list() == []


def test_an_uploaded_sidecar_s_data_root_is_never_used(attacked, tiny, tmp_path):
    runner, attack_id = attacked
    src = runner.store.get(attack_id).path
    side = json.loads((src / "checkpoint.json").read_text())
    side["data"]["root"] = "/etc"
    run = import_checkpoint(RunStore(tmp_path), (src / "model.safetensors").read_bytes(),
                            "model.safetensors", sidecar=json.dumps(side).encode(),
                            split=tiny)  # fmt: skip
    assert run.config()["job"]["data"]["root"] is None


# ------------------------------------------------------------ an interrupted attack training
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_interrupted_attack_training_resumes_from_its_last_epoch(tiny, tmp_path, monkeypatch):
    """The worker dies in epoch 3 of 4: the run keeps its state after epoch 2, resumes from there
    and ends with the weights of a training nothing interrupted, bit for bit (one thread)."""
    from sau_core.events import TrainBatch

    torch.set_num_threads(1)
    job = AttackJob(DATA8, "small_cnn", SPEC, default_train_config("digits", epochs=4))
    runner = JobRunner(RunStore(tmp_path), workers="thread")  # patched functions
    reference = runner.submit(job, split=tiny)
    assert runner.wait(reference, timeout=120) and runner.view(reference).state == "finished"
    original = Run.append_event

    def append_event(self, event, t=None):
        if isinstance(event, TrainBatch) and event.epoch == 3:
            raise _Crash
        return original(self, event, t)

    with monkeypatch.context() as m:
        m.setattr(Run, "append_event", append_event)
        run_id = runner.submit(job, split=tiny)
        assert runner.wait(run_id, timeout=120)
    run = runner.store.get(run_id)
    assert run.resume_round() == 2
    run.update_status(owner={"host": socket.gethostname(), "pid": _dead_pid()})
    assert view_of(run).state == "interrupted"
    runner.resume(run_id, split=tiny)
    assert runner.wait(run_id, timeout=120)
    view = runner.view(run_id)
    assert view.state == "finished", view.message
    assert [e["epoch"] for e in run.events() if e["event"] == "TrainEpoch"] == [1, 2, 3, 4]
    assert [e["epoch"] for e in view.epochs] == [1, 2, 3, 4]
    assert not (run.path / RESUME_FILE).exists()
    a = load_checkpoint(runner.store.get(reference).path).model.state_dict()
    b = load_checkpoint(run.path).model.state_dict()
    for (name, x), y in zip(a.items(), b.values(), strict=True):
        assert torch.equal(x, y), name
    assert run.metrics()["asr"] == runner.view(reference).metrics["asr"]
