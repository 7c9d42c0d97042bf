"""The job runner: queue a job, run it, watch it, stop it, resume it.

A :class:`JobRunner` takes an :class:`~.specs.AttackJob` or a :class:`~.specs.PurifyJob`, creates
a run directory for it (:mod:`.runs`), waits for a device slot (:mod:`.scheduler`) and runs it
in a worker process (:mod:`.workers`; or a thread, ``workers="thread"``) with a stop file as the
stop flag. Each progress event goes to the run's ``events.jsonl`` and into a
:class:`~.live.LiveState` that a page polls with :meth:`JobRunner.view`; a finished run is read
back the same way (:func:`~.live.view_of`), so a page shows a live and a past run with one code
path.

    runner = JobRunner(RunStore("runs"))
    run_id = runner.submit(AttackJob(attack=AttackSpec("badnets")))
    runner.view(run_id).progress()     # fraction done, elapsed, ETA
    runner.stop(run_id)                # honoured within one batch
    runner.resume(run_id)              # an interrupted run, from its last completed round

A defence keeps its state after every completed round (``state/resume.safetensors``), and a
training after every epoch, so a run whose worker or server died continues in the same run
directory with the numbers the uninterrupted run would have given."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import replace
from typing import Any

from ..data import Split
from ..events import ProbeSnapshot
from .live import JobView, LiveState, view_of
from .runs import FINAL_STATES, RunError, RunStore, this_process
from .scheduler import (
    QUEUE_FULL,
    OwnerLimit,
    QueueFull,
    _gpu_count,
    _gpu_index,
    _Job,
    _next,
    default_limits,
    device_kind,
)
from .specs import AttackJob, PurifyJob, job_from_config
from .work import _now, _one_line, _small, execute, release_device_memory
from .workers import (
    WORKER_NAME,
    EventTail,
    StopFile,
    child_main,
    exit_reason,
    request_stop,
    worker_context,
)


class JobRunner:
    """Runs jobs in worker processes (or threads), a bounded number per device; the others wait
    in a bounded queue that is fair between owners (sessions).

    Args:
        store: where the runs are kept.
        max_active: concurrent jobs per device kind: an int for every kind, a mapping such as
            ``{"cpu": 2, "cuda": 4}`` (the kinds it leaves out keep their default), or None for
            :func:`default_limits` (one on the CPU, one per GPU).
        max_queued: jobs that may wait at once; :meth:`submit` raises :class:`QueueFull` beyond.
        gpus: how many CUDA GPUs to spread jobs over (None: all that torch sees).
        workers: ``"process"``: each job in a fresh worker process (:mod:`sau_core.serving.workers`;
            a crash ends only that job, the caller's interpreter is never busy with it);
            ``"thread"``: a thread of this process (tests that patch the job functions,
            notebooks). The live view, Stop and Resume work the same either way.
        max_per_owner: jobs one owner may have waiting at once (None: no cap);
            :meth:`submit` raises :class:`OwnerLimit` beyond.
        time_limit: seconds a job may run before it is stopped (None: no limit); a worker
            process that has not stopped :attr:`STOP_GRACE` seconds later is killed.

    With several GPUs a CUDA job that names no index runs on the least busy GPU, and one that
    names ``cuda:N`` waits for room on that GPU (each GPU takes the CUDA limit divided by the
    number of GPUs, rounded up: one each by default). When a slot frees, the next job comes from
    the owner with the fewest running jobs (ties: the owner served longest ago), first come first
    served within an owner. One runner serves a whole app (all sessions); its methods are
    thread-safe.
    """

    HEARTBEAT = 2.0  # seconds between status.json progress writes
    POLL = 0.25  # seconds between reads of a worker process's new events
    STOP_GRACE = 60.0  # seconds a worker may take to stop at its time limit before it is killed

    def __init__(
        self,
        store: RunStore,
        max_active: int | dict[str, int] | None = None,
        *,
        max_queued: int = 64,
        gpus: int | None = None,
        workers: str = "process",
        max_per_owner: int | None = None,
        time_limit: float | None = None,
    ) -> None:
        gpus = _gpu_count() if gpus is None else gpus
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise ValueError(f"gpus must be an int >= 0, not {gpus!r}")
        limits = default_limits(gpus)
        if isinstance(max_active, int) and not isinstance(max_active, bool):
            limits = dict.fromkeys(limits, max_active)
            self._other = max_active
        elif isinstance(max_active, dict):
            limits.update(max_active)
            self._other = 1
        elif max_active is None:
            self._other = 1
        else:
            raise TypeError(f"max_active must be an int, a dict or None, not {max_active!r}")
        if any(not isinstance(n, int) or n < 1 for n in (*limits.values(), self._other)):
            raise ValueError("max_active must be >= 1")
        if not isinstance(max_queued, int) or max_queued < 1:
            raise ValueError("max_queued must be >= 1")
        if workers not in ("process", "thread"):
            raise ValueError(f"workers must be 'process' or 'thread', not {workers!r}")
        if max_per_owner is not None and (
            isinstance(max_per_owner, bool) or not isinstance(max_per_owner, int)
            or max_per_owner < 1
        ):  # fmt: skip
            raise ValueError(f"max_per_owner must be an int >= 1 or None, not {max_per_owner!r}")
        if time_limit is not None and (
            isinstance(time_limit, bool) or not isinstance(time_limit, (int, float))
            or not 0 < time_limit < float("inf")
        ):  # fmt: skip
            raise ValueError(f"time_limit must be a positive number of seconds, not {time_limit!r}")
        self.workers = workers
        self.max_per_owner = max_per_owner
        self.time_limit = None if time_limit is None else float(time_limit)
        self.store = store
        self.limits = limits
        self.max_queued = max_queued
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._queue: list[_Job] = []  # waiting jobs, in submission order
        self._busy: dict[str, int] = {}  # device kind -> running jobs
        self._gpus = gpus
        self._gpu_load = [0] * self._gpus  # CUDA index -> running jobs placed there
        self._running: dict[str, int] = {}  # owner -> running jobs
        self._served: dict[str, int] = {}  # owner -> tick of its latest start
        self._tick = 0
        self._seq = 0

    def limit(self, device: str) -> int:
        """How many jobs may run at once on this device kind."""
        return self.limits.get(device, self._other)

    # ------------------------------------------------------------------------------ queue
    def _enqueue(self, entry: _Job) -> None:  # under self._lock
        self._jobs[entry.run.id] = entry
        self._queue.append(entry)
        self._dispatch()

    def _spread(self, entry: _Job) -> bool:
        """Whether jobs of this kind are placed on one of several GPUs."""
        return entry.device == "cuda" and self._gpus > 1

    def _free(self, entry: _Job) -> bool:  # under self._lock
        if self._busy.get(entry.device, 0) >= self.limit(entry.device):
            return False
        pinned = _gpu_index(entry.job.device)
        if not self._spread(entry) or pinned is None or not 0 <= pinned < self._gpus:
            return True  # an index that does not exist fails at once, with its message
        return self._gpu_load[pinned] < -(-self.limit("cuda") // self._gpus)

    def _dispatch(self) -> None:  # under self._lock: start what the free slots allow
        while True:
            entry = _next(self._queue, self._running, self._served, self._free)
            if entry is None:
                return
            self._queue.remove(entry)
            stop = StopFile(entry.run.path)
            if stop.path.exists():  # the operator stopped it while it waited (sau jobs stop)
                self._stopped_waiting(entry, stop.reason(""))
                continue
            self._busy[entry.device] = self._busy.get(entry.device, 0) + 1
            if self._spread(entry):
                pinned = _gpu_index(entry.job.device)
                if pinned is None:  # the least busy GPU, the lowest index on a tie
                    pinned = min(range(self._gpus), key=lambda i: (self._gpu_load[i], i))
                if 0 <= pinned < self._gpus:
                    entry.gpu = pinned
                    self._gpu_load[pinned] += 1
            self._running[entry.owner] = self._running.get(entry.owner, 0) + 1
            self._tick += 1
            self._served[entry.owner] = self._tick
            entry.thread = threading.Thread(target=self._work, args=(entry,),
                                            name=f"sau-{entry.run.id}", daemon=True)  # fmt: skip
            entry.thread.start()

    def _drop_stopped_waiting(self) -> None:  # under self._lock
        """Waiting jobs the operator stopped (their stop file, ``sau jobs stop``) leave now."""
        for entry in [e for e in self._queue if StopFile(e.run.path).is_set()]:
            self._queue.remove(entry)
            self._stopped_waiting(entry, StopFile(entry.run.path).reason(""))

    def _check_room(self, owner: str = "") -> None:  # under self._lock
        self._drop_stopped_waiting()
        if len(self._queue) >= self.max_queued:
            raise QueueFull(QUEUE_FULL)
        if self.max_per_owner is not None:
            mine = sum(1 for e in self._queue if e.owner == owner)
            if mine >= self.max_per_owner:
                raise OwnerLimit(
                    f"you already have {mine} job{'s' if mine != 1 else ''} waiting (at most "
                    f"{self.max_per_owner} per session): wait until one starts, or stop one"
                )

    def position(self, run_id: str) -> int | None:
        """How many waiting jobs start before this one (0: it is next), or None when it is not
        waiting. It assumes nothing more is submitted and counts every device's jobs; a newly
        submitted job of a less busy owner may still go ahead of it (that is the fairness)."""
        with self._lock:
            target = self._jobs.get(run_id)
            if target is None or target not in self._queue:
                return None
            queue = list(self._queue)
            running, served, tick = dict(self._running), dict(self._served), self._tick
        for ahead in range(len(queue)):
            entry = _next(queue, running, served, lambda e: True)
            if entry is target:
                return ahead
            queue.remove(entry)
            running[entry.owner] = running.get(entry.owner, 0) + 1
            tick += 1
            served[entry.owner] = tick
        return None  # pragma: no cover - the target is in the queue

    def queued(self) -> int:
        """How many jobs wait for a slot."""
        with self._lock:
            self._drop_stopped_waiting()
            return len(self._queue)

    def runs(self, owner: str):
        """The runs ``owner`` started (:class:`~sau_core.serving.runs.RunInfo`, newest first)."""
        return self.store.scan(owner)[0]

    # ---------------------------------------------------------------------------- public
    def submit(
        self,
        job: AttackJob | PurifyJob,
        label: str = "",
        *,
        split: Split | None = None,
        owner: str = "",
    ) -> str:
        """Queue ``job`` (after cheap checks; ValueError) and return its run id at once.

        ``split``: an already loaded data set to use instead of loading ``job.data`` (tests,
        notebooks); it is never modified. ``owner``: the session submitting it (a random id,
        see :func:`~sau_core.serving.runs.valid_owner`), for fairness and for listing its runs.
        Raises :class:`QueueFull` when ``max_queued`` jobs already wait.
        """
        if not isinstance(job, (AttackJob, PurifyJob)):
            raise TypeError(f"not a job: {job!r}")
        job = job.resolved().check()  # config.json records the data set's defaults used
        device = device_kind(job.device)
        with self._lock:
            self._check_room(owner)
            run = self.store.create(job.kind, job.to_dict(), label, owner=owner)
            self._seq += 1
            entry = _Job(run, LiveState(run.id, job.kind), job, owner, device, self._seq, split)
            self._enqueue(entry)
        return run.id

    def stop(self, run_id: str, owner: str | None = None, reason: str = "") -> bool:
        """Ask a job of this runner to stop; True when it was still active.

        A waiting job leaves the queue at once (stopped before it started); a running one
        stops within one batch. ``owner``: the session asking; only the job's own owner may
        stop it (:class:`~sau_core.serving.runs.RunError` otherwise); None: the operator, who may stop
        any job. ``reason``: the run's message (default: "stopped by the user")."""
        with self._lock:
            entry = self._jobs.get(run_id)
            if entry is None or entry.done.is_set():
                return False
            if owner is not None and owner != entry.owner:
                raise RunError(f"only the session that started run {run_id} can stop it")
            waiting = entry in self._queue
            if waiting:
                self._queue.remove(entry)
            else:
                request_stop(entry.run.path, reason or "stopped by the user")
        if waiting:
            self._stopped_waiting(entry, reason)
        return True

    def _stopped_waiting(self, entry: _Job, reason: str = "") -> None:
        message = "stopped before it started" + (f" ({reason})" if reason else "")
        with contextlib.suppress(OSError):
            entry.run.update_status(state="stopped", ended=_now(), message=message)
            StopFile(entry.run.path).clear()
        entry.live.set_state("stopped", message)
        entry.done.set()

    def owner_of(self, run_id: str) -> str | None:
        """The session in control of a job of this runner (who submitted or resumed it); None
        when this runner does not hold the job."""
        with self._lock:
            entry = self._jobs.get(run_id)
        return None if entry is None else entry.owner

    def is_active(self, run_id: str) -> bool:
        with self._lock:
            entry = self._jobs.get(run_id)
        return entry is not None and not entry.done.is_set()

    def active(self) -> list[str]:
        with self._lock:
            return [rid for rid, entry in self._jobs.items() if not entry.done.is_set()]

    def wait(self, run_id: str, timeout: float | None = None) -> bool:
        """Block until the job ends (True) or ``timeout`` seconds pass (False)."""
        with self._lock:
            entry = self._jobs.get(run_id)
        if entry is None:
            return True
        return entry.done.wait(timeout)

    def view(self, run_id: str) -> JobView:
        """The job's live view when this runner runs it, else the run read back from disk.

        A waiting job's view has its :attr:`JobView.queue_position` (see :meth:`position`)."""
        with self._lock:
            self._drop_stopped_waiting()
            entry = self._jobs.get(run_id)
        if entry is not None:
            view = entry.live.view()
            if view.state == "queued":
                view = replace(view, queue_position=self.position(run_id))
            return view
        return view_of(self.store.get(run_id))

    def resume(
        self, run_id: str, *, split: Split | None = None, owner: str = "", operator: bool = False
    ) -> str:
        """Continue an interrupted purify run (or attack training) in its own run directory;
        returns its id.

        The run restarts after the round (epoch) of its saved state (``state/resume.safetensors``;
        from the start when it was interrupted before its first one ended): the event lines and probe
        files of later rounds are dropped, the status goes back to queued then running (the
        interrupted mark is cleared), new events are appended and the final metrics and
        checkpoint are written as for any run. The numbers are those of an uninterrupted run.
        It waits in the queue like a new job, on behalf of ``owner`` (the session resuming it),
        which must be the session that started it, unless the run has no owner (made by a
        script or the CLI) or ``operator`` is true.

        Raises :class:`~sau_core.serving.runs.RunError` (a ValueError) when the id is unknown, the run is
        not an interrupted purify or attack run, its saved state is unreadable or does not match its
        settings, ValueError when its checkpoint is gone, or :class:`QueueFull`.
        """
        run = self.store.get(run_id)
        started_by = run.config().get("owner") or ""
        if not operator and started_by and started_by != owner:
            raise RunError(f"only the session that started run {run_id} can resume it")
        if run.kind not in ("purify", "attack"):
            raise RunError(f"only purify and attack runs can be resumed; {run_id} is an "
                           f"{run.kind} run")  # fmt: skip
        with self._lock:
            old = self._jobs.get(run_id)
            if old is not None and not old.done.is_set():
                raise RunError(f"run {run_id} is already running")
            state = run.status().get("state")
            if state != "interrupted":
                raise RunError(f"run {run_id} is {state}; only an interrupted run can be resumed")
            try:
                job = job_from_config(run.config().get("job") or {})
            except (KeyError, TypeError, ValueError) as err:
                raise RunError(f"run {run_id}: its settings cannot be read ({err})") from None
            if not isinstance(job, (PurifyJob, AttackJob)) or job.kind != run.kind:
                raise RunError(f"run {run_id} does not describe a {run.kind} job")
            job = job.resolved().check()  # a purify job's checkpoint must still be there
            self._check_room(owner)
            saved = run.resume_state() if run.resume_round() is not None else None
            settings = job.settings if isinstance(job, PurifyJob) else job.train
            if saved is not None and saved.config != settings.to_dict():
                raise RunError(f"run {run_id}: its saved state was made with other settings")
            last = 0 if saved is None else getattr(saved, "round", getattr(saved, "epoch", 0))
            run.rewind_events(last)
            StopFile(run.path).clear()  # a stop asked of the interrupted process is spent
            run.claim()
            run.update_status(state="queued", ended=None, message="", round=last or None,
                              rounds=getattr(settings, "rounds", getattr(settings, "epochs", None)),
                              resumed=_now())  # fmt: skip
            run.append_event({"event": "Resumed", "round": last})
            live = LiveState(run.id, run.kind)
            for record in run.events():
                live.apply(record)
            rounds = run.probe_rounds()
            if rounds:
                with contextlib.suppress(RunError):
                    live.probe = run.load_probe(rounds[-1])
            live.set_state("queued")
            self._seq += 1
            entry = _Job(run, live, job, owner, device_kind(job.device), self._seq, split,
                         resume=saved, resumed=True)  # fmt: skip
            self._enqueue(entry)
        return run.id

    # ------------------------------------------------------------------------------ worker
    def _work(self, entry: _Job) -> None:
        job = entry.job
        if entry.gpu is not None:
            job = replace(job, device=f"cuda:{entry.gpu}")
        timer = None
        if self.time_limit is not None:
            timer = threading.Timer(self.time_limit, self._time_up, args=(entry,))
            timer.daemon = True
            timer.start()
        try:
            if self.workers == "process":
                self._work_in_process(entry, job)
            else:
                live = entry.live

                def on_record(record: dict, event: Any) -> None:
                    live.apply(record, probe=event if isinstance(event, ProbeSnapshot) else None)

                live.set_state("running")
                state, message, metrics = execute(
                    entry.run, job, StopFile(entry.run.path), entry.split, entry.resume,
                    claim=not entry.resumed, on_record=on_record, heartbeat=self.HEARTBEAT,
                )  # fmt: skip
                live.set_state(state, message, metrics)
        finally:
            if timer is not None:
                timer.cancel()
            try:
                if self.workers != "process":
                    release_device_memory()
            finally:
                with self._lock:
                    self._busy[entry.device] -= 1
                    if entry.gpu is not None:
                        self._gpu_load[entry.gpu] -= 1
                    self._running[entry.owner] -= 1
                    self._dispatch()
                entry.done.set()

    def _time_up(self, entry: _Job) -> None:
        if entry.done.is_set():
            return
        minutes = self.time_limit / 60
        with contextlib.suppress(OSError):
            request_stop(entry.run.path, f"stopped at the time limit of {minutes:g} min per job")
        entry.time_up = time.monotonic()

    def _work_in_process(self, entry: _Job, job: Any) -> None:
        """Run ``job`` in a fresh worker process and mirror its events into the live summary."""
        run, live = entry.run, entry.live
        tail = EventTail(run.path / "events.jsonl")
        if entry.resumed:
            tail.skip_to_end()  # the summary already holds the events before the resume
        split = entry.split if _small(entry.split) else None  # a large one: the worker loads it
        proc = worker_context().Process(
            target=child_main,
            args=(str(self.store.root.absolute()), run.id, job.to_dict(), this_process(),
                  self._threads_per_worker(entry.device), entry.resumed, split),
            name=WORKER_NAME + run.id, daemon=True,
        )  # fmt: skip
        live.set_state("running")
        try:
            proc.start()
        except Exception as err:  # no process could start: the job fails, the app runs on
            message = f"could not start a worker process: {_one_line(err)}"
            with contextlib.suppress(OSError):
                run.update_status(state="failed", ended=_now(), message=message)
            live.set_state("failed", message)
            return
        entry.process = proc

        def drain() -> None:
            for record in tail.read():
                probe = None
                if record.get("event") == "ProbeSnapshot" and isinstance(record.get("round"), int):
                    with contextlib.suppress(RunError, OSError, ValueError):
                        probe = run.load_probe(record["round"])
                live.apply(record, probe=probe)

        while proc.is_alive():
            drain()
            if entry.time_up is not None and time.monotonic() - entry.time_up > self.STOP_GRACE:
                proc.kill()  # it did not stop within the grace period
            proc.join(self.POLL)
        drain()
        status = run.status()
        state = str(status.get("state"))
        message = str(status.get("message") or "")
        if state not in FINAL_STATES or state == "interrupted":  # it died without a last word
            message = exit_reason(proc.exitcode)
            if entry.time_up is not None:
                state = "failed"
                message = f"stopped at the time limit of {self.time_limit / 60:g} min per job; " \
                          f"{message}"  # fmt: skip
            elif run.kind in ("purify", "attack"):  # its state after the last round is on disk
                state = "interrupted"
                unit = "round" if run.kind == "purify" else "epoch"
                message = f"{message}; Resume continues after {unit} {run.resume_round() or 0}"
            else:
                state = "failed"
            with contextlib.suppress(OSError):
                run.update_status(state=state, ended=_now(), message=message)
                StopFile(run.path).clear()
        try:
            metrics = run.metrics()
        except RunError:
            metrics = None
        live.set_state(state, message, metrics)

    def _threads_per_worker(self, device: str) -> int | None:
        """CPU threads for a worker: the cores shared among the CPU slots (None: torch's)."""
        if device != "cpu":
            return None
        return max(1, (os.cpu_count() or 1) // max(1, self.limit("cpu")))
