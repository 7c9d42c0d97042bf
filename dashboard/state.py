"""Session-state helpers and the app-wide cached resources (the job runner, data sets).

The job runner and the data sets are shared by every session (``st.cache_resource``) and never
mutated by a page; what one user has chosen (their model, their runs) lives in
``st.session_state`` and in the URL (``?run=ID``), so a reload or a shared link reattaches.
"""

from __future__ import annotations

import json
import re
import secrets

import streamlit as st

from sau_core.data import DatasetInfo, DataSpec, Split
from sau_core.io.checkpoint import SIDECAR, CheckpointError, Sidecar, load_checkpoint, sidecar_of
from sau_core.serving import AttackJob, JobRunner, PurifyJob, QueueFull
from sau_core.serving.runs import Run, RunError, RunInfo, RunStore, default_root, valid_run_id

MODEL = "model"  # the chosen backdoored model: a dict, see choose_model
ATTACK_RUN = "attack_run"  # the attack run this session watches
PURIFY_RUN = "purify_run"  # the purify run this session watches
OWNER = "owner"  # this browser's random id: the owner of the runs it starts
OWNER_COOKIE = "sau_lab_owner"  # where the browser keeps it, so a reload finds its runs again
_COOKIE_PENDING = "owner_cookie_pending"
_OWNER_ID = re.compile(r"^[0-9a-f]{16}$")
LINKED = "linked_runs"  # ids of the runs this session opened by a link (?run=ID)
PENDING = "pending_jobs"  # (job, label) this session asked for that wait for room in the queue


# The server's job settings, from the environment (name: default, lowest allowed, meaning).
SETTINGS = {
    "SAU_LAB_CPU_JOBS": (1, 1, "jobs that run at once on the CPU (each gets the cores / N)"),
    "SAU_LAB_MAX_WAITING": (2, 1, "jobs one browser session may have waiting"),
    "SAU_LAB_JOB_MINUTES": (60, 0, "minutes a job may run before it is stopped (0: no limit)"),
}


def runner_settings(environ: dict) -> dict:
    """The job runner's settings from ``environ`` (:data:`SETTINGS`); ValueError naming the
    variable for a value that is not a whole number in range."""
    out = {}
    for name, (default, low, meaning) in SETTINGS.items():
        raw = environ.get(name, "").strip()
        if not raw:
            out[name] = default
            continue
        if not raw.isdigit() or int(raw) < low or int(raw) > 100_000:
            raise ValueError(
                f"{name}={raw[:20]!r}: use a whole number from {low} ({meaning}); unset it for "
                f"the default, {default}"
            )
        out[name] = int(raw)
    workers = environ.get("SAU_LAB_WORKERS", "process").strip() or "process"
    if workers not in ("process", "thread"):
        raise ValueError(
            f"SAU_LAB_WORKERS={workers[:20]!r}: use process (each job in its own worker "
            "process, the default) or thread"
        )
    out["SAU_LAB_WORKERS"] = workers
    return out


@st.cache_resource(show_spinner=False)
def _runner(root: str) -> JobRunner:
    import os
    import threading

    from sau_core.serving.workers import warm_up

    settings = runner_settings(dict(os.environ))
    store = RunStore(root)
    store.mark_interrupted()  # runs left "running" by a server that died
    minutes = settings["SAU_LAB_JOB_MINUTES"]
    runner = JobRunner(
        store,
        {"cpu": settings["SAU_LAB_CPU_JOBS"]},
        workers=settings["SAU_LAB_WORKERS"],
        max_per_owner=settings["SAU_LAB_MAX_WAITING"],
        time_limit=minutes * 60 if minutes else None,
    )
    if runner.workers == "process":  # start the fork server now, not with the first job
        threading.Thread(target=warm_up, name="sau-warm-up", daemon=True).start()
    return runner


def runner() -> JobRunner:
    """The app's one job runner, for the runs root in ``$SAU_LAB_RUNS`` (default ``runs/``)."""
    return _runner(str(default_root().absolute()))


def store() -> RunStore:
    return runner().store


def owner() -> str:
    """This browser's owner id: random, never user text, made once and kept in a cookie.

    A reload (F5) opens a new Streamlit session; the cookie gives it the same id, so it lists
    the runs it started before. A shared link (``?run=ID``) carries no cookie: it grants the
    linked run only. The first run of a session without the cookie sets it (a line of JavaScript
    on the page; nothing leaves the machine)."""
    if OWNER not in st.session_state:
        cookie = st.context.cookies.get(OWNER_COOKIE) if st.context.cookies else None
        if isinstance(cookie, str) and _OWNER_ID.match(cookie):
            st.session_state[OWNER] = cookie
        else:
            st.session_state[OWNER] = secrets.token_hex(8)
            st.session_state[_COOKIE_PENDING] = True
    if st.session_state.pop(_COOKIE_PENDING, False):
        value = st.session_state[OWNER]  # 16 hex digits, safe inside the script
        st.html(
            f"<script>document.cookie = '{OWNER_COOKIE}={value}; path=/; "
            "max-age=31536000; SameSite=Strict';</script>",
            unsafe_allow_javascript=True,
        )
    return st.session_state[OWNER]


def submit(job: AttackJob | PurifyJob, label: str = "", split: Split | None = None) -> str:
    """Queue ``job`` in the app's runner on behalf of this session; its run id.

    Raises ValueError for a bad job, :class:`~sau_core.serving.QueueFull` when the queue is full."""
    return runner().submit(job, label, split=split, owner=owner())


def queue_all(jobs: list[tuple[PurifyJob, str]]) -> None:
    """Queue several jobs for this session: as many as the runner takes now, the rest as room
    frees (:func:`feed_pending`, called by the pages that show them); a session may only have
    a few jobs waiting at once (``SAU_LAB_MAX_WAITING``)."""
    st.session_state.setdefault(PENDING, []).extend(jobs)
    feed_pending()


def feed_pending() -> tuple[list[str], list[str]]:
    """Submit this session's pending jobs while the runner takes them; (the run ids queued now,
    the messages of jobs that could not be queued at all, which are dropped)."""
    pending = st.session_state.get(PENDING, [])
    queued, failed = [], []
    while pending:
        job, label = pending[0]
        try:
            queued.append(submit(job, label, load_split(job.data)))
        except QueueFull:
            break
        except (ValueError, RuntimeError, OSError) as err:
            failed.append(f"{label}: {err}")
        pending.pop(0)
    return queued, failed


def pending() -> list[str]:
    """The labels of this session's jobs still waiting for room in the queue."""
    return [label for _, label in st.session_state.get(PENDING, [])]


def linked() -> set[str]:
    """The runs this session opened by a link: it may see them besides its own."""
    return set(st.session_state.get(LINKED, ()))


def visible(info: RunInfo) -> bool:
    """Whether this session may list the run: its own, one it opened by a link, or a run made
    outside any browser session (no owner: by a script or the CLI, e.g. a teacher's prepared
    runs), which every session shares."""
    return info.owner in ("", owner()) or info.id in linked()


def visible_runs() -> tuple[list[RunInfo], list[str]]:
    """This session's runs and the ones it opened by link (newest first), and the skipped
    folders' messages."""
    runs, problems = store().scan()
    return [r for r in runs if visible(r)], problems


@st.cache_resource(show_spinner="Loading the data set ...", max_entries=4)
def _split(data_json: str) -> Split:
    return DataSpec.from_dict(json.loads(data_json)).load()


def load_split(data: DataSpec | dict) -> Split:
    """A data set, loaded once per server (shared and read-only: nothing may modify it)."""
    d = data.to_dict() if isinstance(data, DataSpec) else dict(data)
    return _split(json.dumps(d, sort_keys=True))


# ------------------------------------------------------------------------------ the model
def choose_model(
    path: str,
    title: str,
    *,
    arch: str,
    data: dict,
    attack: dict | None,
    metrics: dict | None,
    source: str,
) -> None:
    """Remember the backdoored model to purify (a checkpoint directory and what it says)."""
    st.session_state[MODEL] = {
        "path": str(path),
        "title": title,
        "arch": arch,
        "data": data,
        "attack": attack,
        "metrics": metrics,
        "source": source,
    }


def model() -> dict | None:
    return st.session_state.get(MODEL)


def model_from_run(run: Run) -> dict:
    """The model choice for a finished attack or import run; RunError when it has no checkpoint."""
    if not run.has_checkpoint():
        raise RunError(f"run {run.id} has no checkpoint (yet)")
    try:
        side = sidecar_of(run.path)
        if side is None:
            raise CheckpointError(f"it has no {SIDECAR}")
        data = side.data if side.data is not None else {
            "name": side.dataset.name, "root": None, "kwargs": dict(side.dataset.params)}  # fmt: skip
    except CheckpointError as err:
        raise RunError(f"run {run.id}: unreadable {SIDECAR} ({err})") from None
    label = run.config().get("label") or run.id
    return {
        "path": str(run.path),
        "title": f"{run.kind} run: {label}",
        "arch": side.arch,
        "data": data,
        "attack": side.attack,
        "metrics": side.metrics,
        "source": run.kind,
    }


@st.cache_resource(show_spinner=False, max_entries=4)
def load_model(path: str):
    """The model of a checkpoint directory, loaded once per server (read-only: nothing may
    modify it; a defence copies it)."""
    return load_checkpoint(path).model


def checkpoint_sidecar(path: str) -> Sidecar | None:
    """A checkpoint directory's checked sidecar (None when it is missing or unreadable)."""
    try:
        return sidecar_of(path)
    except CheckpointError:
        return None


@st.cache_resource(show_spinner=False)
def _devices() -> tuple[str, ...]:
    import torch

    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names.append("cuda")
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.device_count() > 1 else []  # fmt: skip
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return tuple(names)


def devices() -> list[str]:
    """The devices a job can ask for on this server (no CUDA entry without a GPU)."""
    return list(_devices())


def has_cuda() -> bool:
    return "cuda" in _devices()


def checkpoint_info(path: str) -> DatasetInfo:
    """The data set geometry a checkpoint directory's sidecar records; ValueError if unreadable."""
    try:
        side = sidecar_of(path)
    except CheckpointError as err:
        raise ValueError(f"cannot read {SIDECAR} in {path}: {err}") from None
    if side is None or side.dataset is None:
        raise ValueError(f"{SIDECAR} in {path} does not record the data set's geometry")
    return side.dataset


# ------------------------------------------------------------------------------- the URL
def query_run() -> tuple[Run | None, str]:
    """The run named by ``?run=ID``, or None and a message saying what was wrong (or '')."""
    run_id = st.query_params.get("run")
    if not run_id:
        return None, ""
    if not valid_run_id(run_id):
        return None, f"The link names no valid run (`{run_id[:40]}`)."
    try:
        run = store().get(run_id)
    except RunError as err:
        return None, f"Cannot open that run: {err}"
    st.session_state[LINKED] = sorted(linked() | {run.id})
    return run, ""


def linked_run() -> Run | None:
    """:func:`query_run` for a page: the linked run, with a bad link reported as a warning."""
    run, problem = query_run()
    if problem:
        st.warning(problem)
    return run


def watch(run_id: str, kind: str) -> None:
    """Make ``run_id`` this session's current run of ``kind`` and put it in the URL."""
    st.session_state[PURIFY_RUN if kind == "purify" else ATTACK_RUN] = run_id
    st.query_params["run"] = run_id


def current_run(kind: str) -> str | None:
    """This page's run: the URL's when it is of ``kind``, else the session's latest one, else
    (after a reload, which starts a new session) the newest run of ``kind`` this browser
    started."""
    key = PURIFY_RUN if kind == "purify" else ATTACK_RUN
    run, _ = query_run()
    if run is not None and run.kind == kind:
        st.session_state[key] = run.id
        return run.id
    if key not in st.session_state:
        mine = [r for r in store().scan(owner())[0] if r.kind == kind]
        if mine:
            st.session_state[key] = mine[0].id  # scan lists the newest first
    run_id = st.session_state.get(key)
    if run_id and not st.query_params.get("run"):
        # Put it (back) in the URL on every run: the write in watch() can be lost when a rerun
        # races it (streamlit#7961), and then a reload would not find the run again.
        st.query_params["run"] = run_id
    return run_id


def reset_form(prefix: str) -> None:
    """Forget the widget values under ``prefix.`` so the form shows its defaults again."""
    for key in [k for k in st.session_state if str(k).startswith(prefix + ".")]:
        del st.session_state[key]


def started_by_me(run_id: str) -> bool:
    """Whether this session started the run (or nobody did: a run made by the CLI or a
    script), so it may resume it; a link shows a run, it does not hand over its controls."""
    try:
        started_by = store().get(run_id).config().get("owner") or ""
    except (RunError, OSError, ValueError):
        return False
    return started_by in ("", owner())


def resume(run_id: str) -> None:
    """Continue an interrupted purify run or attack training in this server's runner and watch it.

    The run's data set is taken from this server's shared copy when its settings name one.
    Raises RunError (a ValueError) or ValueError with a message to show.
    """
    data = (store().get(run_id).config().get("job") or {}).get("data")
    split = load_split(data) if isinstance(data, dict) else None
    runner().resume(run_id, split=split, owner=owner())
    watch(run_id, store().get(run_id).kind)
