"""One table for several defences run on one backdoored model: what ``sau compare``, the
dashboard's Compare page and ``bench/bench_defenses.py`` print and write."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

__all__ = ["COLUMNS", "comparison_row", "table_csv", "table_text", "write_table"]

# column, header, how it is shown
COLUMNS = (
    ("defense", "defence", "{}"),
    ("acc", "ACC", "{:.3f}"),
    ("asr", "ASR", "{:.3f}"),
    ("ra", "RA", "{:.3f}"),
    ("pull", "pull", "{:.3f}"),
    ("pull_class", "to", "{}"),
    ("der", "DER", "{:.3f}"),
    ("seconds", "seconds", "{:.1f}"),
    ("rounds", "rounds", "{}"),
)


def largest_pull(block: dict | None) -> tuple[float | None, int | None]:
    """The largest off-target pull of an evaluation block and its class (None, None without)."""
    pull = (block or {}).get("off_target")
    if not pull:
        return None, None
    cls, share = max(((int(c), float(v)) for c, v in pull.items()), key=lambda cv: cv[1])
    return share, (cls if share > 0 else None)


def comparison_row(metrics: dict, name: str | None = None) -> dict:
    """A table row from a defended run's ``metrics.json``: ACC, ASR, RA, the largest off-target
    pull and its class, DER, seconds and rounds; ``name`` None takes the metrics' defence."""
    after = metrics.get("after") or {}
    share, cls = largest_pull(after)
    return {
        "defense": name or metrics.get("defense") or "sau",
        "acc": after.get("acc"),
        "asr": after.get("asr"),
        "ra": after.get("ra"),
        "pull": share,
        "pull_class": cls,
        "der": metrics.get("der"),
        "seconds": metrics.get("seconds"),
        "rounds": metrics.get("rounds_done"),
    }


def before_row(metrics: dict) -> dict:
    """The backdoored model's row (no defence) from any defended run's metrics."""
    before = metrics.get("before") or {}
    share, cls = largest_pull(before)
    return {"defense": "none (backdoored)", "acc": before.get("acc"), "asr": before.get("asr"),
            "ra": before.get("ra"), "pull": share, "pull_class": cls, "der": None,
            "seconds": None, "rounds": None}  # fmt: skip


def _cell(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def table_text(rows: list[dict]) -> str:
    """The rows as an aligned text table (``-`` where a value was not measured)."""
    cells = [[h for _, h, _ in COLUMNS]] + [
        [_cell(r.get(k), f) for k, _, f in COLUMNS] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in cells]  # fmt: skip
    return "\n".join(lines)


def table_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[k for k, _, _ in COLUMNS], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k) for k, _, _ in COLUMNS})
    return buf.getvalue()


def write_table(rows: list[dict], out: str | Path, stem: str = "comparison") -> tuple[Path, Path]:
    """``<out>/<stem>.csv`` and ``<out>/<stem>.json`` (atomic); returns both paths."""
    from ..io.atomic import write_bytes_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / f"{stem}.csv", out / f"{stem}.json"
    write_bytes_atomic(csv_path, table_csv(rows).encode())
    write_bytes_atomic(json_path, (json.dumps(rows, indent=1) + "\n").encode())
    return csv_path, json_path
