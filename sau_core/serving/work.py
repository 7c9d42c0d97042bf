"""One job's work, the same in a worker process and in a thread: load, run, write the outputs,
and the messages a failed job shows (out of memory: what to change)."""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable
from typing import Any

from ..data import Split
from ..defenses import DefenseState
from ..events import ROUND_EVENTS, NonFiniteLoss
from ..io.checkpoint import CheckpointError, load_checkpoint
from ..metrics import evaluate
from ..pipeline import (
    backdoor_for,
    plant_backdoor,
    purify_checkpoint,
    write_attack_outputs,
    write_purify_outputs,
)
from ..train import TrainState, default_train_config
from .live import BATCH_EVENTS
from .runs import Run
from .specs import AttackJob, PurifyJob, check_fits, checkpoint_data
from .workers import (
    StopFile,
)


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

    Used by a worker thread and by a worker process (:func:`sau_core.serving.workers.child_main`).
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
