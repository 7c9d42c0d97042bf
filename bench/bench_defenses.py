"""Every defence on the same backdoored digits models: ACC, ASR, RA, pull, DER and seconds.

A sweep (``sau sweep``, sau_core.sweep) of attacks x defences x seeds in the demo setting
(digits 16x16, 10% poisoning, target 0, 30% clean data; each attack on its ready-made model's
architecture: the grid's "default" model), each defence with its digits defaults
(sau_core.lab.recipes; the papers' with --paper). Per attack and seed the sweep plants the
backdoored model once (seed = the poisoning's, the training's and the clean subset's) and runs
every defence on it, each a run directory under OUT/runs. This script prints the machine, then
the leaderboard as a table of means (and the spread over seeds), then every cell's line with
the load where it ran. ``pull``: the largest share of triggered images sent to one class that is
neither their own nor the target (sau_core.metrics.off_target_pull).

The sweep's folder (--out; by default one per choice of --paper and --set) keeps every cell: a
stopped bench resumes where it stopped, and the same command with more attacks or seeds runs
only the new cells. The same table, without the machine line, comes from

    sau sweep --resolution 16 --attacks badnets blended sig wanet lc lf ssba inputaware \
        --defenses sau ft fp nad anp ibau --seeds 0 1 2 --workers 1 --out OUT --markdown PATH

    python bench/bench_defenses.py --markdown docs/results/defenses.md
    python bench/bench_defenses.py --attacks badnets --defenses ft fp --seeds 0   # one row
    python bench/bench_defenses.py --attacks badnets blended --defenses anp --seeds 0 \\
        --set anp.rounds=500 --out sweeps/anp500
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Markdown, add_markdown, load_now, machine_line, parser
from sau_core.defenses import list_defenses
from sau_core.lab.presets import DEMO
from sau_core.sweep import grid_from_dict, run_lines, run_sweep, to_markdown
from sau_core.sweep.grid import settings_from_items

ATTACKS = ("badnets", "blended", "sig", "wanet", "lc", "lf", "ssba", "inputaware")


def main() -> None:
    ap = parser(__doc__, epilog=True)
    ap.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=ATTACKS)
    ap.add_argument("--defenses", nargs="+", default=list_defenses(), choices=list_defenses())
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", action="append", default=[], metavar="DEFENCE.KEY=VALUE",
                    help="a setting of one defence over its defaults, e.g. anp.rounds=500")  # fmt: skip
    ap.add_argument("--paper", action="store_true",
                    help="each defence with its paper's settings, not digits' (sau_core.lab.recipes)")  # fmt: skip
    ap.add_argument("--out", default=None, help="the sweep's folder (resumed when it exists; "
                    "default sweeps/bench-defenses, -paper and the --set items appended)")  # fmt: skip
    ap.add_argument("--workers", type=int, default=1,
                    help="cells at a time (default 1: each cell gets every core, as the tables' "
                    "times assume)")  # fmt: skip
    ap.add_argument("--no-ray", action="store_true", help="run the cells one by one here")
    add_markdown(ap)
    args = ap.parse_args()
    try:
        settings = settings_from_items(args.set)
    except ValueError as err:
        ap.error(str(err))
    if args.out is None:  # another setting, another folder (a folder keeps one grid's settings)
        tags = (["paper"] if args.paper else []) + [re.sub(r"[^A-Za-z0-9_.]+", "", x)
                                                    for x in args.set]  # fmt: skip
        args.out = "-".join(["sweeps/bench-defenses", *tags])
    if args.workers < 1:
        ap.error(f"--workers must be at least 1, got {args.workers}")
    resolution = DEMO.data.kwargs.get("resolution")
    try:
        grid = grid_from_dict({"dataset": "digits", "resolution": resolution,
                               "models": ["default"], "attacks": args.attacks,
                               "defenses": args.defenses, "seeds": args.seeds,
                               "settings": settings, "paper": args.paper})  # fmt: skip
    except ValueError as err:
        ap.error(str(err))
    md = Markdown("Defences on the same backdoored digits models")
    print(machine_line())
    md.print(
        f"Setting: the demo's (digits {resolution}x{resolution}, 10% poisoning, all-to-one "
        "target 0, 30% clean data; each attack on its ready-made model's architecture). Each "
        "defence with its "
        + ("paper's settings" if args.paper else "digits defaults")
        + (f", with {', '.join(args.set)}." if args.set else ".")
        + f" Run as one sweep (`sau sweep`, {args.workers} worker(s) on {os.cpu_count()} "
        f"cores: {max(1, (os.cpu_count() or 1) // args.workers)} torch thread(s) a cell), in "
        f"`{args.out}`. *pull*: the largest share of triggered images sent to one class that "
        "is neither their own nor the target. *seconds*: mean per run; each run's, with the "
        "1-minute load where it ran, under *Every run*."
    )
    md.print()
    t = time.perf_counter()
    rows = run_sweep(grid, args.out, workers=args.workers, use_ray=not args.no_ray,
                     progress=_progress)  # fmt: skip
    wall = time.perf_counter() - t
    md.print(f"Seeds {', '.join(map(str, args.seeds))}: mean±sd over seeds; *seeds*: the cells "
             "that finished, of the grid's.")  # fmt: skip
    md.print()
    for line in to_markdown(rows).splitlines():
        md.print(line)
    md.print()
    failed = [r for r in rows if r.get("status") != "finished"]
    md.print(f"{len(rows) - len(failed)} of {len(rows)} cells finished; this call took "
             f"{wall / 60:.1f} min (cells already in `{args.out}` were not run again); ended "
             f"{time.strftime('%H:%M')} ({load_now()}).")  # fmt: skip
    md.print()
    md.print("## Every run")
    md.print()
    md.print("```")
    for line in run_lines(rows).splitlines():
        md.print(line)
    md.print("```")
    md.write(args.markdown)


def _progress(s: dict, _last: list = [None]) -> None:  # noqa: B006 - the last count shown
    if s["done"] == _last[0]:
        return
    _last[0] = s["done"]
    print(f"[sweep] {s['done']}/{s['total']} done, {s['running']} running, {s['left']} left, "
          f"{s['failed']} failed ({load_now()})", file=sys.stderr, flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
