"""The live summary of one job: event records folded into a :class:`LiveState` (a lock-guarded
summary a page polls) and read as a :class:`JobView`; :func:`view_of` replays a run directory
the same way, so a page shows a live and a past run with one code path."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

from ..events import ROUND_EVENTS, ProbeSnapshot
from .runs import FINAL_STATES, Run, RunError

MAX_BATCH_POINTS = 2000  # per-batch records kept for the loss curves (thinned by halving)


# ------------------------------------------------------------------------------- live summary
@dataclass(frozen=True)
class Progress:
    fraction: float  # in [0, 1]
    elapsed: float  # seconds since the job started working
    eta: float | None  # seconds left (None until the first step)
    step: int
    total: int | None


@dataclass(frozen=True)
class JobView:
    """A consistent copy of a job's state at one moment (safe to read from any thread)."""

    run_id: str
    kind: str  # "attack" or "purify"
    state: str  # queued, running, finished, stopped, failed, interrupted
    message: str
    device: str | None
    step: int
    total_steps: int | None
    t_started: float | None  # wall-clock time of the Started event
    t_last: float | None  # of the latest event
    t_ended: float | None
    epochs: list[dict]  # TrainEpoch records
    rounds: list[dict]  # a defence's round records (SAURound, DefenseRound)
    batches: list[dict]  # thinned TrainBatch / SAUBatch / DefenseBatch records
    before: dict | None  # purify: the backdoored model on the full test sets (Baseline record)
    final: dict | None  # the Finished record's evaluation
    probe: ProbeSnapshot | None  # the latest probe batch
    probe_rounds: list[int]
    metrics: dict | None = None  # metrics.json, once written
    step0: int = 0  # steps already done when the job (re)started: a resumed run's first step
    queue_position: int | None = None  # queued in this runner: jobs that start before it

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def progress(self, now: float | None = None) -> Progress:
        """Fraction of steps done, elapsed seconds and an ETA extrapolated from the step rate."""
        total = self.total_steps
        if self.t_started is None:
            return Progress(1.0 if not self.active else 0.0, 0.0, None, self.step, total)
        end = self.t_ended if self.t_ended is not None else (time.time() if now is None else now)
        elapsed = max(0.0, end - self.t_started)
        if not self.active:
            return Progress(1.0, elapsed, 0.0, self.step, total)
        fraction = min(1.0, self.step / total) if total else 0.0
        eta = None
        done = self.step - self.step0  # steps since t_started (a resumed run counts from there)
        if done > 0 and total and self.t_last is not None:
            rate = max(self.t_last - self.t_started, 1e-9) / done
            eta = max(0.0, rate * (total - self.step) - (end - self.t_last))
        return Progress(fraction, elapsed, eta, self.step, total)


_BATCH_KEEP = ("step", "epoch", "round", "loss", "l_cl", "l_shared", "l_adv", "l_share", "shared", "n", "losses")  # fmt: skip
BATCH_EVENTS = ("TrainBatch", "SAUBatch", "DefenseBatch")


class LiveState:
    """The running summary of one job, fed with event records (dicts), read as :class:`JobView`.

    :meth:`apply` and :meth:`view` may be called from different threads.
    """

    def __init__(self, run_id: str, kind: str) -> None:
        self._lock = threading.Lock()
        self.run_id, self.kind = run_id, kind
        self.state, self.message = "queued", ""
        self.device: str | None = None
        self.step, self.total_steps, self.step0 = 0, None, 0
        self.t_started = self.t_last = self.t_ended = None
        self.epochs: list[dict] = []
        self.rounds: list[dict] = []
        self.batches: list[dict] = []
        self.stride = 1
        self.before = self.final = self.metrics = None
        self.probe: ProbeSnapshot | None = None
        self.probe_rounds: list[int] = []

    def apply(self, record: dict, probe: ProbeSnapshot | None = None) -> None:
        """Fold one event record (as :meth:`Run.append_event` writes it) into the summary."""
        kind = record.get("event")
        with self._lock:
            t = record.get("t")
            if isinstance(t, (int, float)):
                self.t_last = t
            if kind == "Started":
                self.device = record.get("device")
                self.total_steps = record.get("total_steps")
                self.t_started, self.t_ended = t, None
                self.step0 = self.step if record.get("resumed_from") else 0
                self.state = "running"
            elif kind in BATCH_EVENTS:
                self.step = int(record.get("step", self.step))
                if self.step % self.stride == 0:
                    self.batches.append({k: record[k] for k in _BATCH_KEEP if k in record})
                    if len(self.batches) > MAX_BATCH_POINTS:
                        self.batches = self.batches[1::2]
                        self.stride *= 2
            elif kind == "TrainEpoch":
                self.epochs.append(record)
            elif kind in ROUND_EVENTS:
                self.rounds.append(record)
            elif kind == "Baseline":
                self.before = record
            elif kind == "ProbeSnapshot":
                if probe is not None:
                    self.probe = probe
                rnd = record.get("round")
                if isinstance(rnd, int) and rnd not in self.probe_rounds:
                    self.probe_rounds.append(rnd)
            elif kind == "Finished":
                self.final = record.get("final")
                self.t_ended = t

    def set_state(self, state: str, message: str = "", metrics: dict | None = None) -> None:
        with self._lock:
            self.state = state
            self.message = message
            if metrics is not None:
                self.metrics = metrics
            if state in FINAL_STATES and self.t_ended is None:
                self.t_ended = time.time()

    def view(self) -> JobView:
        with self._lock:
            return JobView(
                run_id=self.run_id,
                kind=self.kind,
                state=self.state,
                message=self.message,
                device=self.device,
                step=self.step,
                total_steps=self.total_steps,
                t_started=self.t_started,
                t_last=self.t_last,
                t_ended=self.t_ended,
                epochs=list(self.epochs),
                rounds=list(self.rounds),
                batches=list(self.batches),
                before=self.before,
                final=self.final,
                probe=self.probe,
                probe_rounds=list(self.probe_rounds),
                metrics=self.metrics,
                step0=self.step0,
            )


def view_of(run: Run) -> JobView:
    """A past (or foreign) run's view, rebuilt from its files: events, status, metrics, probe."""
    live = LiveState(run.id, run.kind)
    for record in run.events():
        live.apply(record)
    status = run.status()
    try:
        metrics = run.metrics()
    except RunError:
        metrics = None
    live.set_state(str(status.get("state", "failed")), str(status.get("message") or ""), metrics)
    rounds = run.probe_rounds()
    view = live.view()
    probe = None
    if rounds:
        try:
            probe = run.load_probe(rounds[-1])
        except RunError:
            probe = None
    return replace(view, probe=probe, probe_rounds=rounds)
