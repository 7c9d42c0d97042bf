"""Background jobs: plant a backdoor or purify a checkpoint in a worker thread, watched live.

A :class:`JobRunner` takes an :class:`AttackJob` or a :class:`PurifyJob`, creates a run
directory for it (:mod:`sau_core.runs`) and runs it in a daemon thread with a
``threading.Event`` as the stop flag. The worker never touches any UI: each progress event goes
to the run's ``events.jsonl`` and into a :class:`LiveState`, a lock-guarded summary (latest
progress, per-epoch and per-round history, thinned per-batch losses, the latest probe batch)
that a UI polls with :meth:`JobRunner.view`. A finished run is read back the same way
(:func:`view_of` replays its events), so a page shows a live and a past run with one code path.

    runner = JobRunner(RunStore("runs"))
    run_id = runner.submit(AttackJob(attack=AttackSpec("badnets")))
    runner.view(run_id).progress()     # fraction done, elapsed, ETA
    runner.stop(run_id)                # honoured within one batch
    runner.resume(run_id)              # an interrupted purify run, from its last completed round

A purify job keeps its state after every completed round (``state/resume.safetensors``, see
:mod:`sau_core.runs`), so a run whose server died can continue in the same run directory with
the numbers the uninterrupted run would have given.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .attacks import AttackSpec, path_params
from .checkpoint import (
    MAX_BYTES,
    WEIGHTS,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    parse_sidecar,
    sidecar_of,
)
from .data import Split
from .defaults import recipe
from .defenses import DefenseState, get_defense
from .events import ROUND_EVENTS, NonFiniteLoss, ProbeSnapshot
from .metrics import evaluate
from .models import MODELS
from .pipeline import (
    DataSpec,
    backdoor_for,
    plant_backdoor,
    purify_checkpoint,
    sidecar_data,
    write_attack_outputs,
    write_import_outputs,
    write_purify_outputs,
)
from .runs import FINAL_STATES, Run, RunError, RunStore, this_process
from .train import TrainConfig, TrainState, default_train_config
from .workers import (
    WORKER_NAME,
    EventTail,
    StopFile,
    child_main,
    exit_reason,
    request_stop,
    worker_context,
)

__all__ = [
    "AttackJob",
    "JobRunner",
    "JobView",
    "LiveState",
    "Progress",
    "PurifyJob",
    "QUEUE_FULL",
    "OwnerLimit",
    "QueueFull",
    "checkpoint_data",
    "execute",
    "import_checkpoint",
    "job_from_config",
    "view_of",
]

MAX_BATCH_POINTS = 2000  # per-batch records kept for the loss curves (thinned by halving)


def _spec_from(d: Any) -> AttackSpec | None:
    return None if d is None else AttackSpec.from_dict(d)


# ------------------------------------------------------------------------------------ the jobs
@dataclass(frozen=True)
class AttackJob:
    """Train ``arch`` on ``data`` poisoned by ``attack`` (see :func:`~sau_core.pipeline.plant_backdoor`)."""

    data: DataSpec = field(
        default_factory=lambda: DataSpec("digits", None, dict(recipe("digits").data))
    )
    arch: str | None = None  # None: the data set's model (sau_core.defaults)
    attack: AttackSpec = field(default_factory=AttackSpec)
    train: TrainConfig | None = None  # None: the data set's defaults (default_train_config)
    device: str | None = None  # None: the best available
    download: bool = False  # fetch a missing torchvision data set (needs the network)

    kind = "attack"

    def __post_init__(self) -> None:
        if self.arch is None:
            object.__setattr__(self, "arch", recipe(self.data.name).arch)

    def check(self) -> AttackJob:
        """Checks that need no data: the model name and the training settings; ValueError."""
        if self.arch not in MODELS:
            raise ValueError(f"unknown model {self.arch!r}; choose from {', '.join(MODELS)}")
        if self.train is not None:
            self.train.validate()
        return self

    def resolved(self) -> AttackJob:
        """This job with the data set's training defaults filled in (what ``config.json`` keeps)."""
        if self.train is not None:
            return self
        return replace(self, train=default_train_config(self.data.name))

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "data": self.data.to_dict(),
            "arch": self.arch,
            "attack": self.attack.to_dict(),
            "train": None if self.train is None else self.train.to_dict(),
            "device": self.device,
            "download": self.download,
        }

    @classmethod
    def from_dict(cls, d: dict) -> AttackJob:
        train = d.get("train")
        return cls(
            data=DataSpec.from_dict(d["data"]),
            arch=None if d.get("arch") is None else str(d["arch"]),
            attack=AttackSpec.from_dict(d.get("attack", {})),
            train=None if train is None else TrainConfig(**train).validate(),
            device=d.get("device"),
            download=bool(d.get("download", False)),
        )


@dataclass(frozen=True)
class PurifyJob:
    """Run a defence (SAU by default) on the checkpoint at ``checkpoint`` (see
    :func:`~sau_core.pipeline.purify_checkpoint`).

    ``settings`` and ``clean_ratio`` left None take the data set's defaults
    (:mod:`sau_core.defaults`) when the job is submitted, so ``config.json`` always records the
    numbers used."""

    checkpoint: str  # a checkpoint directory: a finished attack run, a ready-made one, an import
    settings: Any = None  # the defence's config; None: the data set's (Defense.default_config)
    clean_ratio: float | None = None  # share of the training set the defender holds
    clean_seed: int = 0
    balanced: bool = False
    attack: AttackSpec | None = None  # the trigger when known (ASR, RA, per-class ASR); else None
    data: DataSpec | None = None  # None: the data set the checkpoint names
    device: str | None = None
    download: bool = False
    defense: str = "sau"  # a name in sau_core.defenses.DEFENSES

    kind = "purify"

    def resolved(self) -> PurifyJob:
        """This job with the data set's defaults where it leaves a setting open."""
        if self.settings is not None and self.clean_ratio is not None:
            return self
        name = self.data.name if self.data is not None else _checkpoint_data_name(self.checkpoint)
        return replace(
            self,
            settings=self.settings
            if self.settings is not None
            else get_defense(self.defense).default_config(name),
            clean_ratio=self.clean_ratio
            if self.clean_ratio is not None
            else recipe(name).clean_ratio,
        )

    def check(self) -> PurifyJob:
        entry = get_defense(self.defense)
        job = self.resolved()
        if not isinstance(job.settings, entry.config):
            raise ValueError(f"the settings of a {self.defense} job must be a "
                             f"{entry.config.__name__}, got {type(job.settings).__name__}")  # fmt: skip
        job.settings.validate()
        ratio = job.clean_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ValueError(f"the clean ratio must be in (0, 1], got {ratio!r}")
        if not Path(self.checkpoint).exists():
            raise ValueError(f"no checkpoint at {self.checkpoint}")
        return self

    def to_dict(self) -> dict:
        settings = None if self.settings is None else self.settings.to_dict()
        d = {
            "kind": self.kind,
            "checkpoint": str(self.checkpoint),
            "defense": self.defense,
            "settings": settings,
            "clean_ratio": self.clean_ratio,
            "clean_seed": self.clean_seed,
            "balanced": self.balanced,
            "attack": None if self.attack is None else self.attack.to_dict(),
            "data": None if self.data is None else self.data.to_dict(),
            "device": self.device,
            "download": self.download,
        }
        if self.defense == "sau":  # the key SAU runs have always had (pages and reports read it)
            d["sau"] = settings
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PurifyJob:
        """Inverse of :meth:`to_dict`; also reads run directories from before the defence
        registry (no ``defense``: SAU, its settings under ``sau``)."""
        defense = d.get("defense", "sau")
        entry = get_defense(defense)
        settings = d.get("settings", d.get("sau") if defense == "sau" else None)
        ratio = d.get("clean_ratio")
        return cls(
            checkpoint=str(d["checkpoint"]),
            settings=None if settings is None else entry.config.from_dict(settings),
            clean_ratio=None if ratio is None else float(ratio),
            clean_seed=int(d.get("clean_seed", 0)),
            balanced=bool(d.get("balanced", False)),
            attack=_spec_from(d.get("attack")),
            data=None if d.get("data") is None else DataSpec.from_dict(d["data"]),
            device=d.get("device"),
            download=bool(d.get("download", False)),
            defense=defense,
        )


def _checkpoint_data_name(path: str) -> str:
    """The data set a checkpoint's sidecar names ('' when it names none or cannot be read)."""
    try:
        side = sidecar_data(sidecar_of(path))
    except ValueError:  # CheckpointError is one
        return ""
    return "" if side is None else side.name


def checkpoint_data(ckpt: Checkpoint) -> DataSpec:
    """The data set a checkpoint was made for: its ``data`` block, else its geometry's name
    (:func:`~sau_core.pipeline.sidecar_data`)."""
    return sidecar_data(ckpt.meta) or DataSpec(ckpt.info.name, None, dict(ckpt.info.params))


def check_fits(ckpt: Checkpoint, split: Split) -> None:
    """ValueError when the data set's images or classes differ from what the model expects."""
    a, b = ckpt.info, split.info
    if tuple(a.shape) != tuple(b.shape) or a.num_classes != b.num_classes:
        raise ValueError(
            f"the checkpoint expects {a.num_classes} classes of {tuple(a.shape)} images, the "
            f"data set gives {b.num_classes} classes of {tuple(b.shape)} images"
        )


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


# ---------------------------------------------------------------------------------- the worker
def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _attack(
    job: AttackJob, run: Run, callback, stop, split: Split | None, resume: TrainState | None = None
) -> tuple[dict, bool]:
    split = split if split is not None else job.data.load(download=job.download)
    config = job.train or default_train_config(split.info.name)
    result = plant_backdoor(split, job.attack, job.arch, config, device=job.device,
                            callback=callback, stop=stop, resume=resume,
                            on_state=run.save_state)  # fmt: skip
    metrics = write_attack_outputs(run.path, result, job.data, config)
    return metrics, result.result.stopped


def _purify(
    job: PurifyJob,
    run: Run,
    callback,
    stop,
    split: Split | None,
    resume: DefenseState | None = None,
) -> tuple[dict, bool]:
    try:
        ckpt = load_checkpoint(job.checkpoint, device="cpu")
    except CheckpointError as err:
        raise ValueError(str(err)) from None
    data = job.data or checkpoint_data(ckpt)
    split = split if split is not None else data.load(download=job.download)
    check_fits(ckpt, split)
    spec = job.attack
    if spec is not None:
        spec.validate(split.info)
    # The backdoored model on the full test sets: the curves' round 0.
    ev = evaluate(
        ckpt.model,
        split.test.x,
        split.test.y,
        backdoor_for(split, spec),
        num_classes=split.info.num_classes,
        confusion=False,
    )
    base = ev.to_dict(confusion=False)
    callback({"event": "Baseline", **{k: base[k] for k in ("acc", "asr", "ra", "per_class_asr")}})
    result = purify_checkpoint(
        ckpt,
        split,
        job.settings,
        defense=job.defense,
        clean_ratio=job.clean_ratio,
        clean_seed=job.clean_seed,
        balanced=job.balanced,
        spec=spec,
        device=job.device,
        callback=callback,
        stop=stop,
        resume=resume,
        on_state=run.save_state,
    )
    metrics = write_purify_outputs(
        run.path, result, ckpt, clean_ratio=job.clean_ratio, clean_seed=job.clean_seed, spec=spec
    )
    return metrics, result.stopped


QUEUE_FULL = "the queue is full, try again in a minute"


class QueueFull(RuntimeError):
    """The runner already holds ``max_queued`` waiting jobs: :data:`QUEUE_FULL`."""


class OwnerLimit(QueueFull):
    """This owner (session) already has ``max_per_owner`` jobs waiting."""


def device_kind(device: str | None) -> str:
    """The slot pool a job's device asks for: ``cpu``, ``cuda`` or ``mps`` (None: the best one).

    A name that is no device maps to ``cpu``: such a job fails at once with a clear message.
    """
    import torch

    from .device import pick_device

    try:
        return pick_device(device).type
    except ValueError:
        try:
            return torch.device(device).type
        except (RuntimeError, TypeError):
            return "cpu"


def _gpu_index(device: str | None) -> int | None:
    """The index a device name pins (``cuda:1`` -> 1); None for ``cuda``, auto or None."""
    if device and device.startswith("cuda:"):
        with contextlib.suppress(ValueError):
            return int(device.split(":", 1)[1])
    return None


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_limits(gpus: int | None = None) -> dict[str, int]:
    """Concurrent jobs per device kind: one on the CPU, one on MPS, one per CUDA GPU (``gpus``;
    None: as many as torch sees)."""
    gpus = _gpu_count() if gpus is None else gpus
    return {"cpu": 1, "mps": 1, "cuda": max(1, gpus)}


@dataclass(eq=False)
class _Job:
    run: Run
    live: LiveState
    job: Any
    owner: str
    device: str  # the slot pool: cpu, cuda or mps
    seq: int  # submission order
    split: Any = None
    resume: DefenseState | None = None
    resumed: bool = False
    gpu: int | None = None  # the CUDA device index it was placed on (several GPUs only)
    thread: threading.Thread | None = None  # None while queued
    process: Any = None  # its worker process (workers="process"), once started
    time_up: float | None = None  # monotonic time its time limit was reached
    done: threading.Event = field(default_factory=threading.Event)


def _next(queue: list[_Job], running: dict[str, int], served: dict[str, int], free) -> _Job | None:
    """The job to start next: of the owners with a job that has a free slot (``free(job)``), the
    one with the fewest running jobs, then the one served longest ago (round-robin); FIFO within
    an owner."""
    first: dict[str, _Job] = {}
    for entry in queue:  # in submission order
        if entry.owner not in first and free(entry):
            first[entry.owner] = entry
    if not first:
        return None
    return min(
        first.values(),
        key=lambda e: (running.get(e.owner, 0), served.get(e.owner, -1), e.seq),
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
        workers: ``"process"``: each job in a fresh worker process (:mod:`sau_core.workers`;
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
        """The runs ``owner`` started (:class:`~sau_core.runs.RunInfo`, newest first)."""
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
        see :func:`~sau_core.runs.valid_owner`), for fairness and for listing its runs.
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
        stop it (:class:`~sau_core.runs.RunError` otherwise); None: the operator, who may stop
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

        Raises :class:`~sau_core.runs.RunError` (a ValueError) when the id is unknown, the run is
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


def _small(split: Any, limit: int = 64 << 20) -> bool:
    """Whether a preloaded split is small enough to hand to a worker process by value."""
    if split is None:
        return False
    try:
        parts = (split.train, split.test)
        return sum(p.x.numel() * p.x.element_size() for p in parts) <= limit
    except AttributeError:
        return False


def execute(
    run: Run,
    job: Any,
    stop: StopFile,
    split: Split | None = None,
    resume: DefenseState | None = None,
    *,
    claim: bool = True,
    on_record: Callable[[dict, Any], None] | None = None,
    heartbeat: float = 2.0,
) -> tuple[str, str, dict | None]:
    """Run one job to its end in this process, writing the run's events and status.

    Used by a worker thread and by a worker process (:func:`sau_core.workers.child_main`).
    Returns ``(state, message, metrics)``; a failure is recorded (``error.txt``, a one-line
    message), never raised.
    """
    last_beat = [0.0]
    step = [0]

    def callback(event: Any) -> None:
        record = run.append_event(event)
        if on_record is not None:
            on_record(record, event)
        kind = record["event"]
        if kind in BATCH_EVENTS:
            step[0] = int(record.get("step", step[0]))
        changes: dict[str, Any] = {}
        if kind == "Started":
            changes = {"device": record["device"], "total_steps": record["total_steps"]}
        elif kind == "TrainEpoch" or kind in ROUND_EVENTS:
            n = "epoch" if kind == "TrainEpoch" else "round"
            changes = {"round": record[n], "rounds": record[n + "s"]}
        if changes or record["t"] - last_beat[0] > heartbeat:
            last_beat[0] = record["t"]
            run.update_status(step=step[0], heartbeat=record["t"], **changes)

    metrics = None
    try:
        if claim:
            run.claim()
        times = {} if run.status().get("started") else {"started": _now()}
        run.update_status(state="running", heartbeat=time.time(), t_work=time.time(), **times)
        if isinstance(job, AttackJob):
            metrics, stopped = _attack(job, run, callback, stop, split, resume)
        else:
            metrics, stopped = _purify(job, run, callback, stop, split, resume)
        run.forget_state()  # the run has ended: nothing left to resume
        state = "stopped" if stopped else "finished"
        message = stop.reason() if stopped else ""
        run.update_status(state=state, ended=_now(), message=message, t_done=time.time())
    except Exception as err:  # the job fails, the app keeps running
        state, message = "failed", failure_message(err, job)
        try:
            (run.path / "error.txt").write_text(traceback.format_exc())
            run.update_status(state="failed", ended=_now(), message=message)
        except OSError:
            pass
    finally:
        with contextlib.suppress(OSError):
            stop.clear()
    return state, message, metrics


def _out_of_memory_types() -> tuple[type[BaseException], ...]:
    import torch

    found = {
        getattr(torch, "OutOfMemoryError", None),
        getattr(torch.cuda, "OutOfMemoryError", None),
    }
    return tuple(t for t in found if isinstance(t, type))


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is the device running out of memory (CUDA, or MPS's RuntimeError)."""
    if isinstance(err, _out_of_memory_types()):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def failure_message(err: BaseException, job: Any = None) -> str:
    """The one line a failed job shows; for out-of-memory, what to change."""
    if isinstance(err, NonFiniteLoss):
        return str(err)
    if not is_out_of_memory(err):
        return _one_line(err)
    if isinstance(job, PurifyJob):
        size = getattr(job.settings, "batch_size", "?")
        hint = (f"a smaller {job.defense.upper()} batch size (now {size}), a smaller eval_size, "
                "or the CPU")  # fmt: skip
    elif isinstance(job, AttackJob) and job.train is not None:
        hint = f"a smaller training batch size (now {job.train.batch_size}), or the CPU"
    else:
        hint = "a smaller batch size, or the CPU"
    return (f"the device ran out of memory ({_one_line(err)[:160]}). Other jobs keep running; "
            f"try again with {hint}.")  # fmt: skip


def release_device_memory() -> None:
    """Hand the CUDA cache back to the device once a job has ended (its tensors are freed)."""
    import gc

    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def job_from_config(config: dict) -> AttackJob | PurifyJob:
    """The job a run's ``config.json`` ``job`` block describes (to repeat a run)."""
    kind = config.get("kind")
    if kind == "attack":
        return AttackJob.from_dict(config)
    if kind == "purify":
        return PurifyJob.from_dict(config)
    raise ValueError(f"not a job description (kind {kind!r})")


# ----------------------------------------------------------------------------- uploaded models
def _server_path(attack: str, key: str, value: Any) -> bool:
    """A trigger parameter that names a file (``path_params``: Blended's key image, a custom
    trigger's image or mask given by path) rather than carrying the picture (a ``data:`` URI)."""
    try:
        paths = path_params(attack)
    except ValueError:  # an unknown attack: validation names it later
        return False
    return key in paths and isinstance(value, str) and bool(value) and not value.startswith("data:")


def import_checkpoint(
    store: RunStore,
    weights: bytes,
    filename: str,
    *,
    sidecar: bytes | None = None,
    arch: str | None = None,
    data: DataSpec | None = None,
    attack: AttackSpec | None = None,
    label: str = "",
    split: Split | None = None,
    owner: str = "",
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Run:
    """Check an uploaded model and keep it as a finished ``import`` run (a checkpoint directory).

    Args:
        weights: the file's bytes: safetensors, or a plain PyTorch state dict (``.pt``/``.pth``,
            read with ``weights_only=True``; never unpickled otherwise).
        filename: its name (only the extension is used).
        sidecar: an optional SAU Lab ``checkpoint.json``; it names the architecture, data set
            and attack. Its data root and any trigger file path are not used (they name server
            files); a trigger picture carried as a ``data:`` URI is.
        arch, data: the architecture and data set when there is no sidecar (they win over it).
        attack: the trigger when known (ASR/RA are measured with it), else the sidecar's or none.
        owner: the session uploading it (see :meth:`RunStore.create`).
        mean, std: the input normalisation of a bare network's weights (default: the data
            set's); refused for weights that carry their own.

    The model is evaluated on the data set's test set; ``metrics.json`` holds ACC (and ASR/RA).
    Raises ValueError (CheckpointError is one) with a clear message for anything that does not fit.
    """
    suffix = Path(str(filename)).suffix.lower()
    if suffix not in (".safetensors", ".pt", ".pth"):
        raise ValueError(f"upload a .safetensors, .pt or .pth file, not {suffix or 'a file without extension'}")  # fmt: skip
    if len(weights) > MAX_BYTES:
        raise ValueError(f"the weights file is {len(weights) >> 20} MiB, over the 1 GiB limit")
    meta: dict = {}
    if sidecar is not None:
        meta = parse_sidecar(sidecar, "checkpoint.json")  # CheckpointError is a ValueError
    try:
        if data is None:
            side = sidecar_data(meta)
            if side is None:
                raise ValueError("name the data set the model was trained on")
            data = DataSpec(side.name, None, side.kwargs)  # never the sidecar's folder
        if attack is None and isinstance(meta.get("attack"), dict):
            attack = AttackSpec.from_dict(meta["attack"])
    except (TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"checkpoint.json has a malformed data or attack block: {err}") from None
    arch = arch or meta.get("arch")
    if not arch:
        raise ValueError("name the model's architecture")
    if arch not in MODELS:
        raise ValueError(f"unknown model {arch!r}; choose from {', '.join(MODELS)}")
    if attack is not None:  # a file path names a server file: never read it for an upload
        attack = replace(attack, params={k: v for k, v in attack.params.items()
                                         if not _server_path(attack.name, k, v)})  # fmt: skip
    split = split if split is not None else data.load()
    if attack is not None:
        attack.validate(split.info)

    shown = Path(str(filename)).name[:200]
    with tempfile.TemporaryDirectory(prefix="sau-upload-") as tmp:
        path = Path(tmp) / (WEIGHTS if suffix == ".safetensors" else f"weights{suffix}")
        path.write_bytes(weights)
        try:
            # No sidecar in tmp: the architecture and the data set's geometry come from us.
            ckpt = load_checkpoint(path, arch=arch, info=split.info, name=shown, mean=mean,
                                   std=std)  # fmt: skip
        except CheckpointError as err:
            raise ValueError(str(err)) from None
        ev = evaluate(ckpt.model, split.test.x, split.test.y, backdoor_for(split, attack),
                      num_classes=split.info.num_classes, confusion=False)  # fmt: skip
        run = store.create("import", {"kind": "import", "file": Path(filename).name[:200],
                                      "arch": arch, "data": data.to_dict(),
                                      "attack": None if attack is None else attack.to_dict()},
                           label or f"uploaded {Path(filename).name[:80]}", owner)  # fmt: skip
        try:
            write_import_outputs(run.path, ckpt.model, data, attack, ev, shown)
            run.update_status(state="finished", started=_now(), ended=_now())
        except BaseException:
            shutil.rmtree(run.path, ignore_errors=True)
            raise
    return run
