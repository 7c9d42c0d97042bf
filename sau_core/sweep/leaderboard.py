"""The sweep's leaderboard: one row per cell (``leaderboard.csv`` and ``leaderboard.json``),
and the grid of attacks x defences with the mean and spread over seeds."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

from ..io.atomic import write_bytes_atomic, write_json_atomic
from .cells import COLUMNS, EXTRA, _record
from .grid import Cell


def collect(out: Path, cells: list[Cell]) -> list[dict]:
    """Every cell's row (a cell not run yet: status "pending"), in the grid's order."""
    rows = []
    for c in cells:
        row = _record(Path(out), "cells", c.key)
        if row is None:
            row = {"dataset": c.dataset, "model": c.model, "attack": c.attack,
                   "defense": c.defense, "seed": c.seed, "status": "pending"}  # fmt: skip
        rows.append(row)
    return rows


def write_leaderboard(out: Path, rows: list[dict]) -> None:
    """``leaderboard.csv`` (the columns, then the extras) and ``leaderboard.json``, atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[*COLUMNS, *EXTRA], extrasaction="ignore",
                       lineterminator="\n")  # fmt: skip
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in (*COLUMNS, *EXTRA)})
    write_bytes_atomic(Path(out) / "leaderboard.csv", buf.getvalue().encode("utf-8"))
    write_json_atomic(Path(out) / "leaderboard.json", {"rows": rows, "summary": summary(rows)})


def read_leaderboard(out: str | Path) -> list[dict]:
    """The rows of a sweep directory's ``leaderboard.json``; ValueError when there is none."""
    path = Path(out) / "leaderboard.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        rows = d["rows"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise TypeError("rows must be a list of objects")
        return rows
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a sweep's leaderboard ({err})") from None


def _stats(values: list) -> dict:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": statistics.fmean(vals), "sd": statistics.pstdev(vals), "n": len(vals)}


def summary(rows: list[dict]) -> list[dict]:
    """Per (dataset, model, attack, defence): mean and spread over seeds of ACC, ASR, RA, pull,
    DER and seconds, the cells finished and failed."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r.get("dataset"), r.get("model"), r.get("attack"), r.get("defense"))
        groups.setdefault(key, []).append(r)
    out = []
    for (dataset, model, attack, defense), rs in groups.items():
        ok = [r for r in rs if r.get("status") == "finished"]
        entry = {"dataset": dataset, "model": model, "attack": attack, "defense": defense,
                 "finished": len(ok), "failed": sum(r.get("status") == "failed" for r in rs),
                 "runs": [r.get("run") for r in ok]}  # fmt: skip
        for k in ("acc", "asr", "ra", "pull", "der", "seconds"):
            entry[k] = _stats([r.get(k) for r in ok])
        out.append(entry)
    return out
