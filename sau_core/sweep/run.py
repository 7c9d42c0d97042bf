"""Run a sweep: every cell as a Ray task (a local Ray started in this process by default, an
existing cluster with ``address``), or one by one in this process when Ray is not installed or
does not start. Finished cells are skipped, so a stopped sweep resumes; a failing cell is
recorded with its message and the others go on. The leaderboard is rewritten as cells finish."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from .cells import defend, is_finished, plant
from .grid import Cell, Grid
from .leaderboard import collect, write_leaderboard

REPO = Path(__file__).resolve().parents[2]


# what a sweep folder's cells mean: 2 = a cell's seed also draws the defender's clean subset
GRID_VERSION = 2


class SweepWarning(UserWarning):
    pass


def _ray(address: str | None, cpus: int):
    """(an initialised Ray module, whether this call started it), or (None, False) with a
    warning when Ray cannot be had. An address that cannot be reached is an error (the user
    asked for that cluster), not a fallback."""
    try:
        import ray
    except ImportError:
        warnings.warn("Ray is not installed (pip install 'ray>=2.9'); running the cells one by "
                      "one in this process", SweepWarning, stacklevel=3)  # fmt: skip
        return None, False
    if ray.is_initialized():  # the caller's own Ray (a notebook, a driver script): use it
        return ray, False
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}}  # fmt: skip
    try:
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            ray.init(num_cpus=cpus, include_dashboard=False, runtime_env=env,
                     log_to_driver=False, configure_logging=False)  # fmt: skip
    except Exception as err:  # noqa: BLE001 - Ray raises many kinds
        if address:
            raise ValueError(f"cannot reach the Ray cluster at {address!r}: "
                             f"{' '.join(str(err).split())[:300]}") from None  # fmt: skip
        warnings.warn(f"Ray did not start ({type(err).__name__}: {str(err)[:200]}); running the "
                      "cells one by one in this process", SweepWarning, stacklevel=3)  # fmt: skip
        return None, False
    return ray, True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A TCP connection to ``host:port`` (also ``ray://host:port``) within ``timeout``; Ray
    itself waits minutes on an address nobody answers. "auto" (a cluster on this machine) is
    left to Ray."""
    import re
    import socket

    if address == "auto":
        return
    m = re.fullmatch(r"(?:ray://)?\[?([A-Za-z0-9_.:-]+?)\]?:(\d{1,5})", address.strip())
    if not m:
        raise ValueError(f"--address {address!r}: expected HOST:PORT (or ray://HOST:PORT, auto)")
    try:
        with socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout):
            pass
    except OSError as err:
        raise ValueError(
            f"cannot reach the Ray cluster at {address!r} ({err}); check the "
            "address and that the head node is running (`ray start --head`)"
        ) from None


def _same_grid(out: Path, grid: Grid) -> None:
    """A sweep folder resumes only the grid it was made for: finished cells of other settings
    (epochs, rounds, resolution, defence settings) would be skipped and mixed into the leaderboard."""
    import json

    try:
        stored = json.loads((out / "grid.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # a new folder (or one without a readable grid): nothing to mix with
    if stored.get("version") != GRID_VERSION:
        raise ValueError(f"{out} holds a sweep written by an earlier SAU Lab, whose cells drew "
                         "the defender's clean subset with seed 0 whatever their seed; give "
                         "another --out (its leaderboard stays readable)")  # fmt: skip
    mine = grid.to_dict()
    # what makes a cell's result
    keys = ("dataset", "resolution", "epochs", "rounds", "settings", "paper", "data_root")
    changed = [k for k in keys if stored.get(k) != mine.get(k)]
    if changed:
        raise ValueError(f"{out} holds a sweep with other settings ({', '.join(f'{k}: {stored.get(k)!r} -> {mine.get(k)!r}' for k in changed)}); "
                         "give another --out, or the same settings to resume it")  # fmt: skip


def run_sweep(
    grid: Grid,
    out: str | Path,
    *,
    workers: int = 2,
    address: str | None = None,
    use_ray: bool = True,
    gpus_per_task: float = 0.0,
    runs: str | Path | None = None,
    progress: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run every cell of ``grid`` not yet finished in ``out``; returns every cell's row.

    ``runs``: the run store the cells' run directories go to (default ``out/runs``; the
    dashboard's, ``runs/``, lets its pages open every cell). ``workers``: tasks at a time on a
    local Ray (each with ``cpu_count // workers`` torch threads, asking Ray for as many CPUs;
    on a cluster, one each); ``gpus_per_task``: GPUs each task asks for (1 on GPU workers). ``progress`` gets
    ``{"done", "running", "left", "failed", "total"}`` as cells move.
    """
    grid.check()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer of at least 1, got {workers!r}")
    if use_ray and address:
        _check_reachable(address)  # before anything is written
    out = Path(out).resolve()  # tasks on other machines, and a resume from elsewhere
    _same_grid(out, grid)
    out.mkdir(parents=True, exist_ok=True)
    runs = str(Path(runs).resolve() if runs is not None else out / "runs")
    Path(runs).mkdir(parents=True, exist_ok=True)
    from ..io.atomic import write_json_atomic

    write_json_atomic(out / "grid.json", {**grid.to_dict(), "runs": str(Path(runs).resolve()),
                                          "version": GRID_VERSION})  # fmt: skip
    cells = grid.cells()
    rows = dict(zip((c.key for c in cells), collect(out, cells), strict=True))
    todo = [c for c in cells if not is_finished(rows[c.key])]
    total, skipped = len(cells), len(cells) - len(todo)
    state = {"done": skipped, "running": 0, "left": len(todo), "failed": 0, "total": total,
             "skipped": skipped}  # fmt: skip
    written = [0.0]

    def tell() -> None:
        if progress is not None:
            progress(dict(state))

    def record(c: Cell, row: dict) -> None:
        """A cell ended: count it, and rewrite the leaderboard at most every 2 s (a grid of
        thousands of cells must not rewrite it thousands of times)."""
        rows[c.key] = row
        state["done"] += 1
        state["failed"] += row.get("status") != "finished"
        if time.monotonic() - written[0] >= 2.0:
            write_leaderboard(out, [rows[x.key] for x in cells])
            written[0] = time.monotonic()

    tell()
    # locally, the machine's cores shared by the workers; on a cluster this machine's count says
    # nothing of the nodes', so one thread and one CPU per task (Ray packs a node with tasks)
    threads = 1 if address else max(1, (os.cpu_count() or 1) // max(1, workers))
    ray, ours = _ray(address, workers * threads) if (use_ray and todo) else (None, False)
    gd = grid.to_dict()
    try:
        if ray is None:
            plants: dict[str, dict] = {}
            for c in todo:
                state["running"], state["left"] = 1, state["left"] - 1  # one at a time
                tell()
                if c.plant_key not in plants:
                    plants[c.plant_key] = plant(gd, vars(c), str(out), runs=runs)
                state["running"] = 0
                record(c, defend(gd, vars(c), str(out), plants[c.plant_key], runs=runs))
                tell()
        else:
            window = workers if not address else _cluster_cpus(ray)
            _on_ray(ray, gd, todo, out, runs, threads, gpus_per_task, state, tell, record,
                    window=max(2, window))  # fmt: skip
    finally:  # also when stopped half way: the leaderboard holds every cell that ended
        if ray is not None and ours:  # a Ray the caller started stays up
            ray.shutdown()
        # the cells' files are the truth: a task may have finished after the last wait (a
        # stopped sweep), and its row must be in the leaderboard as it is skipped on resume
        rows.update(zip((c.key for c in cells), collect(out, cells), strict=True))
        write_leaderboard(out, [rows[c.key] for c in cells])
    return [rows[c.key] for c in cells]


def _on_ray(ray, gd, todo: list[Cell], out: Path, runs, threads, gpus, state, tell, record,
            window: int = 2) -> None:  # fmt: skip
    """The cells as Ray tasks, a backdoored model (a row of the grid) at a time per worker:
    at most ``window`` rows are in flight, so cells finish row by row (what a stopped sweep has
    done is whole rows) instead of every model being planted before the first defence runs."""
    # each task asks Ray for the CPUs its torch threads use, so a node runs no more at once
    opts = {"num_cpus": threads, "num_gpus": gpus, "max_retries": 0}
    plant_task = ray.remote(**opts)(plant)
    defend_task = ray.remote(**opts)(defend)
    rows: dict[str, list[Cell]] = {}
    for c in todo:
        rows.setdefault(c.plant_key, []).append(c)
    queue = list(rows.values())
    left: dict[str, int] = {}
    pending = {}

    def submit() -> None:
        while queue and len(left) < window:
            cells = queue.pop(0)
            planted = plant_task.remote(gd, vars(cells[0]), str(out), threads, runs)
            left[cells[0].plant_key] = len(cells)
            for c in cells:  # Ray starts each defence once its model is planted
                pending[defend_task.remote(gd, vars(c), str(out), planted, threads, runs)] = c

    submit()
    started = time.monotonic()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=2.0)
        for ref in ready:
            c = pending.pop(ref)
            try:
                row = ray.get(ref)
            except Exception as err:  # noqa: BLE001 - a task that died (worker lost, ...)
                row = _task_lost(out, c, err)
            record(c, row)
            left[c.plant_key] -= 1
            if not left[c.plant_key]:
                del left[c.plant_key]
        submit()
        state["running"] = _busy(ray, len(pending), threads)
        state["left"] = len(pending) + sum(map(len, queue)) - state["running"]
        state["elapsed"] = round(time.monotonic() - started, 1)
        tell()


def _cluster_cpus(ray) -> int:
    try:
        return int(ray.cluster_resources().get("CPU", 1))
    except Exception:  # noqa: BLE001
        return 1


def _busy(ray, pending: int, per_task: int = 1) -> int:
    """Tasks running now: the CPUs in use over the CPUs per task, at most the pending ones."""
    try:
        total = ray.cluster_resources().get("CPU", 0)
        free = ray.available_resources().get("CPU", 0)
        return min(pending, int(round((total - free) / max(1, per_task))))
    except Exception:  # noqa: BLE001
        return 0


def _task_lost(out: Path, c: Cell, err: BaseException) -> dict:
    from ..io.atomic import write_json_atomic

    row = {"dataset": c.dataset, "model": c.model, "attack": c.attack, "defense": c.defense,
           "seed": c.seed, "status": "failed", "run": "",
           "message": f"the task was lost: {type(err).__name__}: {str(err)[:300]}"}  # fmt: skip
    write_json_atomic(out / "cells" / f"{c.key}.json", row)
    return row
