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


def _planted(rows: list[dict]) -> dict[tuple, dict]:
    """The backdoored models: per (dataset, model, attack), one row per seed whose cell read
    the model's figures (``*_before``), whichever defence's cell it was."""
    planted: dict[tuple, dict] = {}
    for r in rows:
        if r.get("status") == "finished" and r.get("acc_before") is not None:
            key = (r.get("dataset"), r.get("model"), r.get("attack"))
            planted.setdefault(key, {}).setdefault(r.get("seed"), r)
    return planted


def summary(rows: list[dict]) -> list[dict]:
    """Per (dataset, model, attack, defence): mean and spread over seeds of ACC, ASR, RA, pull,
    DER and seconds, the cells (all, finished, failed), and ``before``: the same of the
    backdoored models of (dataset, model, attack), over the seeds any of its cells finished
    (ACC, ASR, RA, pull; empty for rows written without them)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r.get("dataset"), r.get("model"), r.get("attack"), r.get("defense"))
        groups.setdefault(key, []).append(r)
    # every entry of an attack shows the same backdoored models
    before = {key: {k: _stats([r.get(k + "_before") for r in by_seed.values()])
                    for k in ("acc", "asr", "ra", "pull")}
              for key, by_seed in _planted(rows).items()}  # fmt: skip
    blank = {k: _stats([]) for k in ("acc", "asr", "ra", "pull")}
    out = []
    for (dataset, model, attack, defense), rs in groups.items():
        ok = [r for r in rs if r.get("status") == "finished"]
        entry = {"dataset": dataset, "model": model, "attack": attack, "defense": defense,
                 "cells": len(rs), "finished": len(ok),
                 "failed": sum(r.get("status") == "failed" for r in rs),
                 "runs": [r.get("run") for r in ok]}  # fmt: skip
        for k in ("acc", "asr", "ra", "pull", "der", "seconds"):
            entry[k] = _stats([r.get(k) for r in ok])
        entry["before"] = before.get((dataset, model, attack), blank)
        out.append(entry)
    return out


# ----------------------------------------------------------------------------- as markdown
def _ms(stat: dict) -> str:
    """A :func:`_stats` as ``0.99`` (one value), ``0.99±0.01`` (mean±sd over seeds) or ``-``."""
    if stat["n"] == 0:
        return "-"
    return f"{stat['mean']:.2f}" if stat["n"] == 1 else f"{stat['mean']:.2f}±{stat['sd']:.2f}"


def _num(v, fmt: str = "{:.3f}") -> str:
    return "-" if not isinstance(v, (int, float)) else fmt.format(v)


def to_markdown(rows: list[dict]) -> str:
    """The leaderboard (:func:`summary`) as a markdown table: per (model, attack) the backdoored
    model first (``none (backdoored)``, from the cells' before-figures on the same test sets),
    then each defence; ACC, ASR, RA, pull, DER as mean±sd over the finished seeds, mean
    seconds, and how many seeds finished (of the grid's)."""
    seeds: dict[tuple, set] = {}
    for r in rows:
        seeds.setdefault((r.get("dataset"), r.get("model"), r.get("attack")), set()).add(
            r.get("seed"))  # fmt: skip
    by_attack: dict[tuple, list[dict]] = {}
    for e in summary(rows):
        by_attack.setdefault((e["dataset"], e["model"], e["attack"]), []).append(e)
    lines = ["| attack | model | defence | ACC | ASR | RA | pull | DER | seconds | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for (dataset, model, attack), entries in by_attack.items():
        b = entries[0]["before"]
        lines.append(f"| {attack} | {model} | none (backdoored) | "
                     + " | ".join(_ms(b[k]) for k in ("acc", "asr", "ra", "pull"))
                     + f" | - | - | {b['acc']['n']}/{len(seeds[dataset, model, attack])} |")  # fmt: skip
        for e in entries:
            sec = "-" if e["seconds"]["mean"] is None else f"{e['seconds']['mean']:.1f}"
            lines.append(f"| {attack} | {model} | {e['defense']} | "
                         + " | ".join(_ms(e[k]) for k in ("acc", "asr", "ra", "pull", "der"))
                         + f" | {sec} | {e['finished']}/{e['cells']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def run_lines(rows: list[dict]) -> str:
    """Every cell as a line, grouped under its backdoored model, each time with the 1-minute
    load where it ran: the figures behind :func:`to_markdown`."""
    out: list[str] = []
    seen: set = set()
    planted = _planted(rows)
    for r in rows:
        key = (r.get("dataset"), r.get("model"), r.get("attack"))
        if (*key, r.get("seed")) not in seen:
            seen.add((*key, r.get("seed")))
            # the backdoored model's figures from any cell of it that read them
            b = planted.get(key, {}).get(r.get("seed"), r)
            out.append(f"[{r.get('attack')} seed {r.get('seed')}] {r.get('model')} planted in "
                       f"{_num(r.get('plant_seconds'), '{:.1f}')} s (load "
                       f"{_num(r.get('plant_load'), '{:.2f}')}): ACC {_num(b.get('acc_before'))} "
                       f"ASR {_num(b.get('asr_before'))} RA {_num(b.get('ra_before'))}")  # fmt: skip
        name = f"{r.get('defense')!s:5s}"
        if r.get("status") != "finished":
            message = " ".join(str(r.get("message") or "").split())
            out.append(f"  {name} {r.get('status')}: {message}")
            continue
        to = r.get("pull_class")
        out.append(f"  {name} ACC {_num(r.get('acc'))} ASR {_num(r.get('asr'))} "
                   f"RA {_num(r.get('ra'))} pull {_num(r.get('pull'))}"
                   f"{f' (to {to})' if to is not None else ''} DER {_num(r.get('der'))} "
                   f"{_num(r.get('seconds'), '{:7.1f}')} s (load "
                   f"{_num(r.get('load'), '{:.2f}')})")  # fmt: skip
    return "\n".join(out) + "\n"
