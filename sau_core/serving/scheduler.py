"""Which job runs next: one slot per GPU and a set number on the CPU, a queue served fairly
across owners, and the refusals when it is full (:class:`QueueFull`, :class:`OwnerLimit`)."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

from ..defenses import DefenseState
from .live import LiveState
from .runs import Run

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

    from ..device import pick_device

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
