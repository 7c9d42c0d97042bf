"""One cell of a sweep, run in any process (a Ray task or this one): plant the backdoor (one run
directory per backdoored model, shared by the cells that differ only in the defence), run the
defence (its own run directory), and return the cell's leaderboard row. Run directories are the
dashboard's (``sau_core.serving.runs``), so every cell can be opened on its pages."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..io.atomic import write_json_atomic
from .grid import Cell, Grid

COLUMNS = ("dataset", "model", "attack", "defense", "seed", "acc", "asr", "ra", "pull", "der",
           "seconds", "status")  # fmt: skip
# then: the backdoored model on the same test sets, the planting, where and under what load the
# cell ran, its run directories and any failure's message
EXTRA = ("pull_class", "acc_before", "asr_before", "ra_before", "pull_before", "plant_seconds",
         "plant_load", "load", "host", "run", "plant_run", "message")  # fmt: skip


def _record(out: Path, folder: str, key: str) -> dict | None:
    try:
        d = json.loads((out / folder / f"{key}.json").read_text(encoding="utf-8"))
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def is_finished(row: dict | None) -> bool:
    """A cell's row says it finished and its run directory is still there (else: run it)."""
    return bool(row and row.get("status") == "finished" and row.get("run")
                and Path(row["run"]).is_dir())  # fmt: skip


def _data(grid: Grid):
    from ..data import DataSpec
    from ..lab.recipes import recipe

    kwargs = dict(recipe(grid.dataset).data) if grid.dataset == "digits" else {}
    if grid.dataset == "digits" and grid.resolution is not None:
        kwargs["resolution"] = grid.resolution
    return DataSpec(grid.dataset, grid.data_root, kwargs)


def _execute(runs: Path, job, label: str) -> tuple[str, str, Path]:
    from ..serving.runs import RunStore
    from ..serving.work import execute
    from ..serving.workers import StopFile

    job = job.resolved().check()
    run = RunStore(runs).create(job.kind, job.to_dict(), label)
    state, message, _ = execute(run, job, StopFile(run.path))
    return state, message, run.path


def plant(grid: dict, cell: dict, out: str, threads: int = 0, runs: str | None = None) -> dict:
    """Train the backdoored model of ``cell`` (reused when already planted) as a run in ``runs``
    (default ``out/runs``); returns ``{"state", "message", "run", "seconds"}``. Never raises: a
    failure is a state."""
    import torch

    from ..attacks import AttackSpec
    from ..serving import AttackJob
    from ..train import default_train_config

    if threads:
        torch.set_num_threads(threads)
    g, c, out_p = _grid(grid), Cell(**cell), Path(out)
    done = _record(out_p, "plants", c.plant_key)
    if done and done.get("state") == "finished" and Path(done.get("run", "")).is_dir():
        return done
    start = time.perf_counter()
    try:
        train = default_train_config(g.dataset, seed=c.seed,
                                     **({"epochs": g.epochs} if g.epochs else {}))  # fmt: skip
        job = AttackJob(data=_data(g), arch=c.model, attack=AttackSpec(c.attack, seed=c.seed),
                        train=train)  # fmt: skip
        state, message, path = _execute(Path(runs or out_p / "runs"), job, f"sweep: {c.plant_key}")
        result = {"state": state, "message": message, "run": str(path)}
    except Exception as err:  # noqa: BLE001 - a cell's failure is recorded, never fatal
        result = {"state": "failed", "message": f"{type(err).__name__}: {err}", "run": ""}
    result["seconds"] = round(time.perf_counter() - start, 2)
    result.update(_where())
    write_json_atomic(out_p / "plants" / f"{c.plant_key}.json", result)
    return result


def defend(grid: dict, cell: dict, out: str, planted: dict, threads: int = 0,
           runs: str | None = None) -> dict:  # fmt: skip
    """Run the defence of ``cell`` on the planted model (a run in ``runs``, default
    ``out/runs``); write and return its row."""
    import torch

    from ..defenses.compare import largest_pull
    from ..io.checkpoint import sidecar_of
    from ..serving import PurifyJob

    if threads:
        torch.set_num_threads(threads)
    g, c, out_p = _grid(grid), Cell(**cell), Path(out)
    row: dict = {"dataset": c.dataset, "model": c.model, "attack": c.attack,
                 "defense": c.defense, "seed": c.seed, "acc": None, "asr": None, "ra": None,
                 "pull": None, "pull_class": None, "der": None, "seconds": None,
                 "acc_before": None, "asr_before": None, "ra_before": None, "pull_before": None,
                 "plant_seconds": planted.get("seconds"), "plant_load": planted.get("load"),
                 "plant_run": planted.get("run", ""), "run": "", "status": "failed",
                 "message": ""}  # fmt: skip
    start = time.perf_counter()
    try:
        if planted.get("state") != "finished":
            raise RuntimeError(f"planting the backdoor failed: {planted.get('message', '')}")
        spec = sidecar_of(planted["run"]).attack_spec()  # as planted (LF's pattern, ...)
        settings = g.defense_config(c.defense, seed=c.seed)
        # the cell's seed also picks the defender's clean subset (as it picks the poisoning)
        job = PurifyJob(checkpoint=planted["run"], settings=settings, attack=spec,
                        data=_data(g), defense=c.defense, clean_seed=c.seed)  # fmt: skip
        state, message, path = _execute(Path(runs or out_p / "runs"), job, f"sweep: {c.key}")
        row.update(run=str(path), status=state, message=message)
        metrics = json.loads((path / "metrics.json").read_text()) if state == "finished" else {}
        after, before = metrics.get("after") or {}, metrics.get("before") or {}
        pull, to = largest_pull(after)
        row.update(acc=after.get("acc"), asr=after.get("asr"), ra=after.get("ra"), pull=pull,
                   pull_class=to, der=metrics.get("der"), seconds=metrics.get("seconds"),
                   acc_before=before.get("acc"), asr_before=before.get("asr"),
                   ra_before=before.get("ra"),
                   pull_before=largest_pull(before)[0])  # fmt: skip
    except Exception as err:  # noqa: BLE001 - recorded in the row, the sweep goes on
        row.update(status="failed", message=f"{type(err).__name__}: {err}"[:500])
    if row["seconds"] is None:
        row["seconds"] = round(time.perf_counter() - start, 2)
    row.update(_where())
    write_json_atomic(out_p / "cells" / f"{c.key}.json", row)
    return row


def _where() -> dict:
    """Where and under what load a cell ended (its seconds read beside them; on a cluster, the
    node's)."""
    import os
    import platform

    try:
        load = round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # AttributeError: no load average on Windows
        load = None
    return {"load": load, "host": platform.node()}


def _grid(d: dict) -> Grid:
    from .grid import grid_from_dict

    return grid_from_dict({k: v for k, v in d.items() if v is not None})
