"""The run store: every job (attack or purify) keeps its files in a run directory.

A run directory ``<root>/<run id>/`` holds, written as the job goes:

- ``config.json``: what was asked (the job's settings, a free-text label), written once;
- ``status.json``: ``state`` (queued, running, finished, stopped, failed, interrupted), the
  created/started/ended times, the last round or epoch and step, the device, the owning process;
- ``events.jsonl``: one JSON line per progress event (:func:`sau_core.events.to_record` plus a
  time stamp ``t``); the tensors of a :class:`~sau_core.events.ProbeSnapshot` go to
  ``probes/round_NNNN.safetensors`` and its line names that file;
- ``metrics.json`` and the checkpoint files (``model.safetensors`` + ``checkpoint.json``) when
  the job ends, so a finished run directory is itself a checkpoint (``sau purify --checkpoint``);
- ``error.txt`` with the traceback when the job failed;
- ``state/resume.safetensors`` (purify): h's weights, the AMSGrad state and the generator state
  after the last completed round, with the round, the elapsed time, the SAU settings and the
  round records in its metadata (one file, replaced atomically every round, so the weights and
  the round they belong to can never disagree); :meth:`Run.resume_state` reads it back and
  :meth:`sau_core.serving.JobRunner.resume` continues an interrupted run from it.

JSON is written atomically (temporary file, then rename); nothing is pickled. Run ids are made
here from the time, the kind and random hex digits, never from user text, and every id that comes
back from outside (a URL, a form) is checked against that pattern before it touches the disk.
A run whose status says running but whose process is gone is reported as ``interrupted``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import secrets
import socket
import threading
import time
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..events import ProbeSnapshot, to_record
from ..io.atomic import write_json_atomic
from ..state import DefenseState, TrainState

__all__ = [
    "ACTIVE_STATES",
    "DEFAULT_ROOT",
    "KINDS",
    "RESUME_FILE",
    "STATES",
    "Run",
    "RunError",
    "RunInfo",
    "RunStore",
    "RunWarning",
    "default_root",
    "process_alive",
    "this_process",
    "valid_owner",
    "valid_run_id",
]

DEFAULT_ROOT = Path("runs")
ROOT_ENV = "SAU_LAB_RUNS"  # overrides the default root (the dashboard and the tests use it)
KINDS = ("attack", "purify", "import")  # import: a checkpoint the user uploaded
STATES = ("queued", "running", "finished", "stopped", "failed", "interrupted")
ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("finished", "stopped", "failed", "interrupted")
_ID = re.compile(r"^(\d{8}-\d{6})-(attack|purify|import)-([0-9a-f]{6})$")
_OWNER = re.compile(r"[A-Za-z0-9_-]{0,64}")
STALE_AFTER = 600.0  # seconds without a heartbeat before a run on another host counts as dead
MAX_EVENT_BYTES = 64 << 20  # events.jsonl larger than this is read from its last 64 MiB only
RESUME_FILE = "state/resume.safetensors"
RESUME_FORMAT = "sau-lab-resume/1"
MAX_RESUME_BYTES = 4 << 30  # weights + three Adam moments of a large model; refused above


class RunError(ValueError):
    """A run id is malformed or unknown, or a run directory cannot be read."""


class RunWarning(UserWarning):
    """A directory under the runs root was skipped (corrupt or not a run)."""


def default_root() -> Path:
    """``$SAU_LAB_RUNS`` when set, else ``runs/`` (relative to the working directory)."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def valid_run_id(run_id: Any) -> bool:
    """Whether ``run_id`` has the shape of an id this module makes (safe to join to a path)."""
    return isinstance(run_id, str) and _ID.match(run_id) is not None


def valid_owner(owner: Any) -> bool:
    """Whether ``owner`` can name a run's session: "" or up to 64 of ``[A-Za-z0-9_-]``."""
    return isinstance(owner, str) and _OWNER.fullmatch(owner) is not None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ------------------------------------------------------------------------------ process identity
def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), to tell a live owner from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    rest = stat[stat.rfind(")") + 2 :].split()
    return rest[19] if len(rest) > 19 else None


def this_process() -> tuple[int, str | None]:
    """This process's pid and the kernel's start time of it (see :func:`process_alive`)."""
    pid = os.getpid()
    return pid, _process_start(pid)


def _owner() -> dict:
    pid, start = this_process()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": start}


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is no zombie (a dead worker its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rfind(")") + 2 :][:1] in ("Z", "X"):
            return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether ``pid`` runs on this host (a zombie does not) and, where ``start`` is given and
    the kernel tells, is the process that started then (not a reused pid)."""
    return _pid_alive(pid) and (start is None or _process_start(pid) in (None, start))


def owner_alive(status: dict, now: float | None = None) -> bool:
    """Whether the process that wrote ``status`` may still be running its job.

    On this host: its pid exists and (where the kernel says) started when the status says. On
    another host (a shared disk): its heartbeat is younger than :data:`STALE_AFTER` seconds.
    """
    owner = status.get("owner")
    if not isinstance(owner, dict):
        return False
    if owner.get("host") == socket.gethostname():
        pid = owner.get("pid")
        return isinstance(pid, int) and process_alive(pid, owner.get("pid_start"))
    beat = status.get("heartbeat")
    now = time.time() if now is None else now
    return isinstance(beat, (int, float)) and now - beat < STALE_AFTER


# ------------------------------------------------------------------------------------ the run
@dataclass(frozen=True)
class RunInfo:
    """One line of the run list: what :meth:`RunStore.list` returns."""

    id: str
    kind: str
    label: str
    state: str
    created: str
    started: str | None
    ended: str | None
    message: str
    round: int | None  # last completed round (purify) or epoch (attack)
    rounds: int | None
    metrics: dict | None  # metrics.json, when written
    config: dict
    owner: str = ""  # the session that started it ("" for the CLI and older runs)


class Run:
    """A handle on one run directory; every write is atomic (JSON) or an append (events)."""

    def __init__(self, root: Path, run_id: str) -> None:
        if not valid_run_id(run_id):
            raise RunError(f"not a run id: {run_id!r}")
        self.id = run_id
        self.path = Path(root) / run_id
        self._lock = threading.Lock()  # guards status.json read-modify-write and event appends

    def __repr__(self) -> str:
        return f"Run({self.id!r})"

    @property
    def kind(self) -> str:
        return _ID.match(self.id).group(2)

    # ---------------------------------------------------------------------------- files
    def config(self) -> dict:
        return _read_json(self.path / "config.json")

    def status(self) -> dict:
        """``status.json`` as written, with ``state`` turned to interrupted when the owner is gone."""
        status = _read_json(self.path / "status.json")
        if status.get("state") in ACTIVE_STATES and not owner_alive(status):
            status = {**status, "state": "interrupted"}
        return status

    def update_status(self, **changes: Any) -> dict:
        """Merge ``changes`` into ``status.json`` (atomically) and return the new status."""
        with self._lock:
            path = self.path / "status.json"
            status = _read_json(path) if path.exists() else {}
            status.update(changes)
            write_json_atomic(path, status)
            return status

    def claim(self) -> dict:
        """Mark this process as the run's owner (before it starts working)."""
        return self.update_status(owner=_owner(), heartbeat=time.time())

    def metrics(self) -> dict | None:
        path = self._file("metrics.json")
        return _read_json(path) if path.exists() else None

    def write_metrics(self, metrics: dict) -> None:
        write_json_atomic(self.path / "metrics.json", metrics)

    def has_checkpoint(self) -> bool:
        return (self.path / "model.safetensors").is_file() and (
            self.path / "checkpoint.json"
        ).is_file()

    # ---------------------------------------------------------------------- resume state
    def save_state(self, state) -> None:
        """Keep a :class:`~sau_core.state.DefenseState` (or a training state) as
        ``state/resume.safetensors`` (atomic)."""
        save_resume_state(self._file(RESUME_FILE), state)

    def resume_state(self):
        """The saved :class:`~sau_core.state.DefenseState` (or training state); RunError
        when there is none or it is unreadable."""
        path = self._file(RESUME_FILE)
        if not path.is_file():
            raise RunError(f"run {self.id} kept no state to resume from")
        return load_resume_state(path)

    def resume_round(self) -> int | None:
        """The round the saved state would resume after (read from the header only), or None."""
        path = self._file(RESUME_FILE)
        if not path.is_file():
            return None
        try:
            return int(_resume_header(path)["round"])
        except (RunError, KeyError, ValueError):
            return None

    def forget_state(self) -> None:
        """Delete the resume state (a run that ended has no use for it)."""
        path = self._file(RESUME_FILE)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()

    def rewind_events(self, last_round: int) -> int:
        """Drop the event lines of rounds after ``last_round`` (and any ``Finished`` line, and torn
        lines), rewriting ``events.jsonl`` atomically, and delete those rounds' probe files.

        Used when a run resumes from ``last_round``: what an interrupted process wrote after its
        last saved state is redone. Returns the number of lines dropped.
        """
        from ..io.atomic import write_bytes_atomic

        path = self._file("events.jsonl")
        kept, dropped = [], 0
        if path.exists():
            with open(path, "rb") as f:
                for raw in f:
                    try:
                        record = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        dropped += 1
                        continue
                    rnd = None
                    if isinstance(record, dict):  # SAU's rounds, or a training's epochs
                        rnd = record.get("round", record.get("epoch"))
                    late = isinstance(rnd, int) and rnd > last_round
                    if not isinstance(record, dict) or late or record.get("event") == "Finished":
                        dropped += 1
                        continue
                    kept.append(raw if raw.endswith(b"\n") else raw + b"\n")
            write_bytes_atomic(path, b"".join(kept))
        for rnd in self.probe_rounds():
            if rnd > last_round:
                self._file(f"probes/round_{rnd:04d}.safetensors").unlink(missing_ok=True)
        return dropped

    # --------------------------------------------------------------------------- events
    def _file(self, name: str) -> Path:
        """``name`` inside the run directory; RunError when it is a symbolic link."""
        path = self.path / name
        for part in (path, *path.relative_to(self.path).parents[:-1]):
            p = part if part is path else self.path / part
            if p.is_symlink():
                raise RunError(f"{self.id}: {name} is a symbolic link; refusing to follow it")
        return path

    def append_event(self, event: Any, t: float | None = None) -> dict:
        """Append one event (a dataclass from :mod:`sau_core.events` or a plain dict record).

        A :class:`ProbeSnapshot`'s tensors go to ``probes/round_NNNN.safetensors``; its line
        keeps the round and the file name. Returns the record as written.
        """
        if isinstance(event, ProbeSnapshot):
            name = f"probes/round_{event.round:04d}.safetensors"
            save_probe(self.path / name, event)
            record = {"event": "ProbeSnapshot", "round": event.round, "file": name}
        elif isinstance(event, dict):
            record = dict(event)
        else:
            record = to_record(event)
        record["t"] = time.time() if t is None else t
        line = json.dumps(record, allow_nan=True) + "\n"
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        path = self._file("events.jsonl")
        with self._lock:
            try:
                fd = os.open(path, flags, 0o644)
            except OSError as err:  # ELOOP: a link put there after the check
                raise RunError(f"{self.id}: cannot append to events.jsonl: {err}") from None
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(line)
        return record

    def events(self) -> Iterator[dict]:
        """The event records in order; a torn or corrupt line (a crash mid-write) is skipped."""
        path = self._file("events.jsonl")
        if not path.exists():
            return
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - MAX_EVENT_BYTES))
            data = f.read()
        if size > MAX_EVENT_BYTES:  # drop the partial first line
            data = data[data.find(b"\n") + 1 :]
        for raw in data.splitlines():
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict) and isinstance(record.get("event"), str):
                yield record

    def probe_rounds(self) -> list[int]:
        """Rounds with a stored probe snapshot, ascending."""
        folder = self.path / "probes"
        if not folder.is_dir():
            return []
        rounds = []
        for p in folder.glob("round_*.safetensors"):
            m = re.fullmatch(r"round_(\d{4,})\.safetensors", p.name)
            if m:
                rounds.append(int(m.group(1)))
        return sorted(rounds)

    def load_probe(self, round: int) -> ProbeSnapshot:
        if isinstance(round, bool) or not isinstance(round, int) or round < 0:
            raise RunError(f"round must be a non-negative int, got {round!r}")
        path = self._file(f"probes/round_{round:04d}.safetensors")
        if not path.is_file():
            raise RunError(f"run {self.id} has no probe snapshot for round {round}")
        return load_probe(path)

    # --------------------------------------------------------------------------- export
    def zip_bytes(self) -> bytes:
        """The whole run directory as a zip (files under ``<run id>/``); links are skipped."""
        buf = io.BytesIO()
        self.write_zip(buf)
        return buf.getvalue()

    def write_zip(self, dest: str | Path | io.BufferedIOBase) -> None:
        with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(self.path.rglob("*")):
                if path.is_symlink() or not path.is_file() or path.name.endswith(".tmp"):
                    continue
                zf.write(path, f"{self.id}/{path.relative_to(self.path).as_posix()}")


# ------------------------------------------------------------------------------- probe files
_PROBE_TENSORS = [f.name for f in fields(ProbeSnapshot) if f.name != "round"]


def save_probe(path: Path, probe: ProbeSnapshot) -> None:
    """A probe snapshot as safetensors (tensors by field name; the round in the metadata)."""
    from safetensors.torch import save

    from ..io.atomic import write_bytes_atomic

    tensors = {name: getattr(probe, name).detach().cpu().clone() for name in _PROBE_TENSORS}
    write_bytes_atomic(Path(path), save(tensors, metadata={"round": str(probe.round)}))


def load_probe(path: Path) -> ProbeSnapshot:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
        missing = [k for k in _PROBE_TENSORS if k not in tensors]
        if missing:
            raise RunError(f"{path.name} lacks {', '.join(missing)}")
        return ProbeSnapshot(round=int(meta.get("round", -1)), **tensors)
    except (SafetensorError, OSError, ValueError) as err:
        if isinstance(err, RunError):
            raise
        raise RunError(f"cannot read probe file {path.name}: {err}") from None


# ------------------------------------------------------------------------------ resume files
# One layout for every kind: tensors ``model/<name>`` (the weights trained), ``opt/<param
# index>/<key>`` (the optimiser's per-parameter tensors) and ``generator``; the optimiser's other
# numbers, its param groups, the history and the config as JSON in the metadata, with ``kind``
# "train" (a TrainState) or "defense" (a DefenseState, ``defense`` naming it). Files written
# before defences had a registry (SAU only: ``h/``, ``adam/``, no kind) are still read.


def _pack(state_dict: dict, optimizer: dict, generator) -> tuple[dict, dict]:
    """The tensors of a state, and the optimiser's JSON block."""
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in state_dict.items()}
    numbers: dict = {}
    for i, entry in optimizer["state"].items():
        for key, value in entry.items():
            if hasattr(value, "detach"):
                tensors[f"opt/{int(i)}/{key}"] = value.detach().cpu().contiguous()
            else:
                numbers.setdefault(str(int(i)), {})[key] = value
    tensors["generator"] = generator.detach().cpu().contiguous()
    return tensors, {"numbers": numbers, "param_groups": optimizer.get("param_groups")}


def _unpack(tensors: dict, opt: dict, model_prefix: str = "model/", opt_prefix: str = "opt/"):
    """(state_dict, optimizer state_dict, generator) from a file's tensors; ValueError."""
    import torch

    if not isinstance(opt, dict):
        raise ValueError("the optimizer block must be an object")
    model, state, generator = {}, {}, None
    for i, entry in (opt.get("numbers") or {}).items():
        state.setdefault(int(i), {}).update(dict(entry))
    for name, t in tensors.items():
        if name == "generator":
            generator = t
        elif name.startswith(model_prefix):
            model[name[len(model_prefix) :]] = t
        elif name.startswith(opt_prefix) and name.count("/") == 2:
            _, i, key = name.split("/")
            state.setdefault(int(i), {})[key] = t
        else:
            raise ValueError(f"unexpected tensor {name!r}")
    if generator is None or generator.dtype != torch.uint8:
        raise ValueError("no generator state (uint8)")
    optimizer = {"state": state}
    if opt.get("param_groups") is not None:
        optimizer["param_groups"] = opt["param_groups"]
    return model, optimizer, generator


def _history(records, parse) -> list:
    if not isinstance(records, list):
        raise ValueError("the history must be a list")
    return [parse(r) for r in records]


def _train_epoch(rec):
    from ..events import TrainEpoch

    names = {f.name for f in fields(TrainEpoch)}
    d = {k: v for k, v in rec.items() if k != "event"} if isinstance(rec, dict) else {}
    if not isinstance(rec, dict) or rec.get("event") != "TrainEpoch" or set(d) != names:
        raise ValueError("history holds something other than TrainEpoch records")
    return TrainEpoch(**d)


def save_resume_state(path: Path, state) -> None:
    """A :class:`~sau_core.state.DefenseState` or a :class:`~sau_core.state.TrainState`
    as one safetensors file (atomic)."""
    from safetensors.torch import save

    from ..io.atomic import write_bytes_atomic

    train = hasattr(state, "epoch")
    weights = state.model if train else state.h
    tensors, opt = _pack(weights, state.optimizer, state.generator)
    meta = {
        "format": RESUME_FORMAT,
        "kind": "train" if train else "defense",
        "round": str(int(state.epoch if train else state.round)),
        "elapsed": repr(float(state.elapsed)),
        "config": json.dumps(state.config),
        "history": json.dumps([to_record(r) for r in state.history]),
        "optimizer": json.dumps(opt),
    }
    if train:
        meta["scheduler"] = json.dumps(state.scheduler)
    else:
        meta["defense"] = str(state.defense)
    write_bytes_atomic(Path(path), save(tensors, metadata=meta))


def _resume_header(path: Path) -> dict:
    """The metadata of a resume file, read from its header alone (bounded); RunError."""
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < n <= 100 << 20:
            raise RunError(f"{path.name} is not a resume state (bad header)")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunError(f"{path.name} is not a resume state ({err})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != RESUME_FORMAT:
        raise RunError(f"{path.name} is not a SAU Lab resume state")
    return meta


def load_resume_state(path: Path):
    """The :class:`~sau_core.state.DefenseState` (or
    :class:`~sau_core.state.TrainState`) in ``path``; RunError when it is malformed.

    Only checks that need no model are made here (format, names, JSON); the defence (or the
    training) checks the weights, the optimizer state and the settings against the run it
    resumes.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    from ..events import round_from_record

    path = Path(path)
    if path.stat().st_size > MAX_RESUME_BYTES:
        raise RunError(f"{path.name} is over {MAX_RESUME_BYTES >> 30} GiB")
    meta = _resume_header(path)
    try:
        tensors = load(path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError, OSError) as err:
        raise RunError(f"cannot read {path.name}: {err}") from None
    kind = meta.get("kind")
    what = "training state" if kind == "train" else "resume state"
    try:
        rnd = int(meta["round"])
        elapsed = float(meta["elapsed"])
        config = json.loads(meta["config"])
        records = json.loads(meta["history"])
        if not isinstance(config, dict):
            raise ValueError("config must be an object")
        if kind == "train":
            scheduler = json.loads(meta["scheduler"])
            if scheduler is not None and not isinstance(scheduler, dict):
                raise ValueError("the schedule's state must be an object")
            model, optimizer, generator = _unpack(tensors, json.loads(meta["optimizer"]))
            history = _history(records, _train_epoch)
        elif kind == "defense":
            model, optimizer, generator = _unpack(tensors, json.loads(meta["optimizer"]))
            history = _history(records, round_from_record)
            defense = meta["defense"]
        elif kind is None:  # written before the defence registry: SAU's own layout
            model, optimizer, generator = _unpack(tensors, {}, "h/", "adam/")
            history = _history(records, round_from_record)
            defense = "sau"
        else:
            raise ValueError(f"unknown kind {kind!r}")
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError) as err:
        raise RunError(f"{path.name} is not a usable {what}: {err}") from None
    if not math.isfinite(elapsed) or elapsed < 0:
        raise RunError(f"{path.name}: elapsed time must be finite and >= 0")
    if kind == "train":
        return TrainState(rnd, model, optimizer, scheduler, generator, history, elapsed, config)
    return DefenseState(round=rnd, h=model, optimizer=optimizer, generator=generator,
                        history=history, elapsed=elapsed, config=config, defense=defense)  # fmt: skip


def _read_json(path: Path) -> dict:
    if path.is_symlink():
        raise RunError(f"{path.parent.name}: {path.name} is a symbolic link; refusing to follow it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path.parent.name}: {path.name} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise RunError(f"{path.parent.name}: {path.name} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path.parent.name}: {path.name} does not hold a JSON object")
    return data


# ---------------------------------------------------------------------------------- the store
class RunStore:
    """The run directories under one root (created on first write).

    >>> store = RunStore("runs")
    >>> run = store.create("attack", {"attack": {...}}, label="my first backdoor")
    >>> [r.id for r in store.list()]
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(default_root() if root is None else root)

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def create(self, kind: str, config: dict, label: str = "", owner: str = "") -> Run:
        """A new run directory with ``config.json`` and a queued ``status.json``.

        ``owner``: the session that starts it (a random id, see :func:`valid_owner`; "" for none),
        kept in ``config.json`` so a list can show a session only its own runs.
        """
        if not valid_owner(owner):
            raise RunError("a run owner must be a session id of up to 64 letters, digits, - or _")
        if kind not in KINDS:
            raise RunError(f"run kind must be one of {list(KINDS)}, got {kind!r}")
        if not isinstance(label, str):
            raise RunError("a run label must be text")
        label = " ".join(label.split())[:200]  # one line, bounded; never part of a path
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(3)}"
            try:
                (self.root / run_id).mkdir()
            except FileExistsError:
                continue
            break
        else:  # pragma: no cover - 16M ids per second
            raise RunError("could not make a fresh run id")
        run = Run(self.root, run_id)
        created = _now()
        write_json_atomic(
            run.path / "config.json",
            {
                "id": run_id,
                "kind": kind,
                "label": label,
                "created": created,
                "owner": owner,
                "job": config,
            },  # fmt: skip
        )
        write_json_atomic(
            run.path / "status.json",
            {"state": "queued", "created": created, "started": None, "ended": None,
             "round": None, "rounds": None, "step": 0, "total_steps": None, "device": None,
             "message": "", "owner": _owner(), "heartbeat": time.time()},
        )  # fmt: skip
        return run

    def get(self, run_id: Any) -> Run:
        """The run with this id; :class:`RunError` for a malformed or unknown id."""
        if not valid_run_id(run_id):
            raise RunError(f"not a run id: {str(run_id)[:80]!r}")
        run = Run(self.root, run_id)
        if run.path.is_symlink():
            raise RunError(f"{run_id} under {self.root} is a symbolic link, not a run directory")
        if not (run.path / "config.json").is_file():
            raise RunError(f"no run {run_id} under {self.root}")
        return run

    def scan(self, owner: str | None = None) -> tuple[list[RunInfo], list[str]]:
        """All readable runs, newest first, and one message per directory that was skipped.

        ``owner``: only the runs that session started (None: every run).
        """
        runs: list[RunInfo] = []
        problems: list[str] = []
        if not self.root.is_dir():
            return runs, problems
        for path in sorted(self.root.iterdir(), reverse=True):
            if path.name.startswith("."):
                continue
            if not path.is_dir() or path.is_symlink() or not valid_run_id(path.name):
                problems.append(f"{path.name}: not a run directory")
                continue
            try:
                info = self.info(Run(self.root, path.name))
            except RunError as err:
                problems.append(str(err))
                continue
            if owner is None or info.owner == owner:
                runs.append(info)
        return runs, problems

    def list(self, owner: str | None = None) -> list[RunInfo]:
        """All readable runs (of ``owner`` when given), newest first; each skipped directory
        raises a :class:`RunWarning`."""
        runs, problems = self.scan(owner)
        for problem in problems:
            warnings.warn(f"skipped {problem}", RunWarning, stacklevel=2)
        return runs

    def info(self, run: Run) -> RunInfo:
        config = run.config()
        status = run.status()
        if config.get("id") != run.id or config.get("kind") != run.kind:
            raise RunError(f"{run.id}: config.json belongs to another run")
        state = status.get("state")
        if state not in STATES:
            raise RunError(f"{run.id}: unknown state {state!r}")
        try:
            metrics = run.metrics()
        except RunError:
            metrics = None
        return RunInfo(
            id=run.id,
            kind=run.kind,
            label=str(config.get("label", "")),
            state=state,
            created=str(config.get("created", "")),
            started=status.get("started"),
            ended=status.get("ended"),
            message=str(status.get("message") or ""),
            round=status.get("round"),
            rounds=status.get("rounds"),
            metrics=metrics,
            config=config.get("job", {}) if isinstance(config.get("job"), dict) else {},
            owner=config["owner"] if valid_owner(config.get("owner")) else "",
        )

    def mark_interrupted(self) -> list[str]:
        """Write ``interrupted`` into every active run whose owner is gone; returns their ids."""
        done = []
        for info in self.scan()[0]:
            if info.state != "interrupted":
                continue
            run = self.get(info.id)
            raw = _read_json(run.path / "status.json")
            if raw.get("state") in ACTIVE_STATES:
                # status.json is updated just after each round's event line: a kill between the
                # two leaves it one round behind, so the last completed round comes from events.
                done_rounds = [
                    r.get("round", r.get("epoch"))
                    for r in run.events()
                    if r["event"] in ("SAURound", "TrainEpoch")
                ]
                last = [n for n in done_rounds if isinstance(n, int)]
                run.update_status(
                    state="interrupted",
                    ended=_now(),
                    message="the process running this job ended before it finished",
                    **({"round": last[-1]} if last else {}),
                )
                done.append(info.id)
        return done
