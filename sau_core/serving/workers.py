"""Jobs in worker processes: the stop file, the child's entry point and the parent's monitor.

A :class:`~sau_core.serving.JobRunner` with ``workers="process"`` (the dashboard's) runs each job
in a fresh ``spawn`` process, so training and SAU never share the web server's interpreter (its
GIL, its garbage collector, its memory): a job that crashes, even with a native fault or an
out-of-memory kill, ends only its own process, and the server keeps serving.

The child and the parent share nothing but the run directory:

- the child writes ``events.jsonl`` and ``status.json`` as a thread would (it claims the run:
  ``status.json`` names its pid, so a dead worker's run reads as interrupted);
- the parent tails ``events.jsonl`` into the job's live summary (:class:`EventTail`);
- Stop is a file, ``stop`` in the run directory, holding the reason (:class:`StopFile`). The
  child checks it before every batch, so a stop acts within one batch; the operator's
  ``sau jobs stop`` writes the same file from another process.

The child ends within half a second of its server's death (a watchdog thread; the fork server
it came from then ends too): a killed server leaves its runs interrupted, never running unseen.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

__all__ = [
    "STOP_FILE",
    "WORKER_NAME",
    "EventTail",
    "StopFile",
    "child_main",
    "exit_reason",
    "request_stop",
    "warm_up",
    "worker_context",
]

STOP_FILE = "stop"  # in a run directory: its presence asks the job to stop; its text says why
MAX_REASON = 200


def request_stop(run_path: str | Path, reason: str = "stopped by the user") -> None:
    """Ask the job of the run at ``run_path`` to stop (any process may call this)."""
    path = Path(run_path) / STOP_FILE
    tmp = path.with_name(STOP_FILE + ".tmp")
    tmp.write_text(" ".join(str(reason).split())[:MAX_REASON], encoding="utf-8")
    os.replace(tmp, path)


class StopFile:
    """A stop flag (``is_set()``) backed by the run directory's ``stop`` file."""

    def __init__(self, run_path: str | Path) -> None:
        self.path = Path(run_path) / STOP_FILE

    def is_set(self) -> bool:
        return self.path.exists()

    def reason(self, default: str = "stopped by the user") -> str:
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return default
        return text[:MAX_REASON] or default

    def set(self, reason: str = "stopped by the user") -> None:
        request_stop(self.path.parent, reason)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class EventTail:
    """Reads the lines appended to ``events.jsonl`` since the last call (whole lines only)."""

    def __init__(self, path: str | Path, offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset

    def skip_to_end(self) -> None:
        try:
            self.offset = self.path.stat().st_size
        except OSError:
            self.offset = 0

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        records = []
        for raw in data[: end + 1].splitlines():
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict) and isinstance(record.get("event"), str):
                records.append(record)
        return records


def _watch_server(pid: int, start: str | None, every: float = 0.5) -> None:
    """In a worker: end this process as soon as the server that asked for it is gone, leaving
    its run to read as interrupted (its status names this dead process)."""
    import threading

    from .runs import process_alive

    def watch() -> None:
        while process_alive(pid, start):
            time.sleep(every)
        os._exit(3)

    threading.Thread(target=watch, name="sau-watch-server", daemon=True).start()


WORKER_NAME = "sau-worker-"  # the multiprocessing name of every worker process


def _without_main(get_preparation_data):
    """``multiprocessing.spawn.get_preparation_data`` that leaves the caller's ``__main__`` out
    for SAU Lab's workers. A new process otherwise runs the parent's main script first; under
    Streamlit that is the page script (Streamlit puts it in ``sys.modules["__main__"]``), which
    would build a second job runner inside the worker. The workers need nothing from it: their
    entry point lives in this module. Other processes are prepared as before."""

    def prepare(name):
        data = get_preparation_data(name)
        if str(name).startswith(WORKER_NAME):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    prepare.sau_lab = True
    return prepare


@functools.cache
def worker_context():
    """The multiprocessing context workers start from: a fork server that has imported torch and
    the engine once (a new worker then starts in milliseconds, with none of the web server's
    threads or state), or ``spawn`` where there is no fork server (Windows)."""
    import multiprocessing as mp
    from multiprocessing import spawn

    if not getattr(spawn.get_preparation_data, "sau_lab", False):
        spawn.get_preparation_data = _without_main(spawn.get_preparation_data)
    if "forkserver" not in mp.get_all_start_methods():  # pragma: no cover - Windows
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    # torch and the engine, scikit-learn's loaders (the embedded digits) and what the first
    # optimizer imports lazily (torch._dynamo): 3 s and 4 s per worker on this 2-core machine
    ctx.set_forkserver_preload(["sau_core.serving.work", "sklearn.datasets", "torch._dynamo"])
    return ctx


def _noop() -> None:
    pass


def warm_up() -> None:
    """Start the fork server now (importing torch there takes seconds), so the first job does
    not wait for it; a no-op where workers are spawned."""
    proc = worker_context().Process(target=_noop, name=WORKER_NAME + "warm-up", daemon=True)
    proc.start()
    proc.join()


def child_main(
    root: str,
    run_id: str,
    job: dict,
    server: tuple[int, str | None],
    threads: int | None,
    resumed: bool,
    split: Any = None,
) -> None:
    """A worker process's entry point: run one job of the run ``run_id`` under ``root`` for the
    server ``(pid, start time)``, ending when that server is gone."""
    _watch_server(*server)
    import torch

    from .runs import RunStore
    from .specs import job_from_config
    from .work import execute, release_device_memory

    if threads:
        torch.set_num_threads(threads)
    run = RunStore(root).get(run_id)
    spec = job_from_config(job)
    resume = None
    if resumed and run.resume_round() is not None:
        resume = run.resume_state()
    try:
        execute(run, spec, StopFile(run.path), split, resume, claim=True)
    finally:
        release_device_memory()


def exit_reason(code: int | None) -> str:
    """Plain words for a worker's exit code (a negative code is the signal that ended it)."""
    if code is None:
        return "it did not end"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        extra = " (killed: perhaps out of memory)" if -code == signal.SIGKILL else ""
        return f"the worker process was ended by {name}{extra}"
    return f"the worker process exited with code {code}"
