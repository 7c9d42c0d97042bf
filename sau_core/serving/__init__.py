"""Serving runs: the jobs a runner takes (:mod:`.specs`), which runs next (:mod:`.scheduler`),
the runner itself (:mod:`.jobs`), one job's work in a worker process or thread (:mod:`.work`,
:mod:`.workers`), the live summary a page polls (:mod:`.live`), run directories on disk
(:mod:`.runs`) and uploaded models (:mod:`.ingest`).

    runner = JobRunner(RunStore("runs"))
    run_id = runner.submit(PurifyJob("runs/attack-run", defense="ft"))
    runner.view(run_id).progress()     # fraction done, elapsed, ETA
"""

from __future__ import annotations

from .ingest import import_checkpoint
from .jobs import JobRunner
from .live import MAX_BATCH_POINTS, JobView, LiveState, Progress, view_of
from .scheduler import QUEUE_FULL, OwnerLimit, QueueFull, default_limits, device_kind
from .specs import AttackJob, PurifyJob, check_fits, checkpoint_data, job_from_config
from .work import execute, failure_message, is_out_of_memory, release_device_memory

__all__ = [
    "MAX_BATCH_POINTS",
    "QUEUE_FULL",
    "AttackJob",
    "JobRunner",
    "JobView",
    "LiveState",
    "OwnerLimit",
    "Progress",
    "PurifyJob",
    "QueueFull",
    "check_fits",
    "checkpoint_data",
    "default_limits",
    "device_kind",
    "execute",
    "failure_message",
    "import_checkpoint",
    "is_out_of_memory",
    "job_from_config",
    "release_device_memory",
    "view_of",
]
