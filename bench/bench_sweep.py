"""The same sweep grid with 1 and 2 local Ray workers: wall time and cells per minute.

Each run starts a local Ray in this process (its start-up counts) on a fresh folder, so nothing is
skipped. The default grid is the smoke-test size (digits 8x8, one epoch, two rounds: `sau sweep
--quick`), 2 attacks x 3 defences x 2 seeds = 12 cells, 4 backdoored models.

    python bench/bench_sweep.py --markdown docs/results/sweep.md
    python bench/bench_sweep.py --workers 1 2 --attacks badnets --defenses ft
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Markdown, add_markdown, load_now, machine_line, parser
from sau_core.sweep import QUICK, grid_from_dict, run_sweep


def main() -> None:
    ap = parser(__doc__, epilog=True)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--attacks", nargs="+", default=["badnets", "blended"])
    ap.add_argument("--defenses", nargs="+", default=["ft", "nad", "sau"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    add_markdown(ap)
    args = ap.parse_args()
    grid = grid_from_dict({**QUICK, "models": ["small_cnn"], "attacks": args.attacks,
                           "defenses": args.defenses, "seeds": args.seeds})  # fmt: skip
    md = Markdown("Sweep scaling on one machine")
    print(machine_line())
    cells = len(grid.cells())
    md.print(f"Grid: digits 8x8, small_cnn, one epoch, two rounds; attacks "
             f"{', '.join(args.attacks)}; defences {', '.join(args.defenses)}; seeds "
             f"{', '.join(map(str, args.seeds))}: {cells} cells. Wall time from the call to the "
             "last cell, Ray's start included.")  # fmt: skip
    md.print()
    md.print("| workers | wall (s) | cells per minute | failed | load before -> after |")
    md.print("|---|---|---|---|---|")
    for w in args.workers:
        with tempfile.TemporaryDirectory(prefix="sau-sweep-bench-") as tmp:
            before = load_now()
            t = time.perf_counter()
            rows = run_sweep(grid, Path(tmp) / "s", workers=w)
            wall = time.perf_counter() - t
            failed = sum(r["status"] != "finished" for r in rows)
            md.print(f"| {w} | {wall:.1f} | {cells / wall * 60:.1f} | {failed} | {before} -> "
                     f"{load_now()} |")  # fmt: skip
    md.print()
    md.print(f"Finished {time.strftime('%H:%M')} ({load_now()}).")
    md.write(args.markdown)


if __name__ == "__main__":
    main()
