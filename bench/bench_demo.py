"""How long the newcomer's commands take, each timed as a user runs it (a fresh process).

1. ``sau --help`` (the command list; no torch is imported): median of ``--help-runs`` runs.
2. ``sau demo`` for the chosen presets: wall time of the whole command (start-up, data,
   training, SAU), with the figures it prints.
3. ``sau attack --dataset digits --attack badnets`` then ``sau purify`` with no other flag (the
   digits defaults): wall time of each, and the before/after table.

Beside every figure: the 1-minute load average just before the command started (the machine is
shared: a figure taken under load is slower, and says so; the previous command of this bench
still counts in it for a minute). Prints figures, asserts nothing. Usage::

    bash .ci/venv python bench/bench_demo.py [--presets badnets blended] [--no-defaults]
        [--markdown docs/results/timings.md]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Markdown, add_markdown, load_now, machine_line, parser

ROOT = Path(__file__).resolve().parent.parent


def _sau(*args: str, cwd: Path) -> tuple[float, str, str]:
    """``sau ARGS`` in a fresh interpreter: (seconds, its stdout, the load just before it)."""
    before = load_now()
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sau_core.cli", *args], cwd=cwd,
                          capture_output=True, text=True, check=False)  # fmt: skip
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"sau {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout, before


def _table(stdout: str) -> str:
    """The before/after lines of a ``sau purify``/``sau demo`` output, on one line."""
    keep = [line.strip() for line in stdout.splitlines()
            if line.strip().startswith(("before", "after"))]  # fmt: skip
    return "; ".join(" ".join(line.split()) for line in keep)


def main() -> None:
    from sau_core.lab.presets import TEACHING_PRESETS

    ap = parser(__doc__)
    ap.add_argument("--presets", nargs="*", default=["badnets"], choices=list(TEACHING_PRESETS))
    ap.add_argument("--help-runs", type=int, default=5)
    ap.add_argument("--no-defaults", action="store_true",
                    help="skip the sau attack + sau purify run")  # fmt: skip
    add_markdown(ap)
    args = ap.parse_args()
    md = Markdown("How long the newcomer's commands take")
    print(machine_line())
    env_root = ROOT  # `python -m sau_core.cli` from the checkout
    with tempfile.TemporaryDirectory(prefix="sau-bench-") as tmp:
        work = Path(tmp)
        help_times = []
        for _ in range(args.help_runs):
            seconds, _, load = _sau("--help", cwd=env_root)
            help_times.append(seconds)
        md.print("| command | wall time | load before | result |")
        md.print("|---|---|---|---|")
        md.print(f"| `sau --help` | {statistics.median(help_times):.2f} s (median of "
                 f"{len(help_times)}; {min(help_times):.2f}-{max(help_times):.2f}) | "
                 f"{load} | the command list |")  # fmt: skip
        for preset in args.presets:
            out = work / f"demo-{preset}"
            seconds, stdout, load = _sau("demo", "--preset", preset, "--out", str(out), "--quiet",
                                         cwd=env_root)  # fmt: skip
            md.print(f"| `sau demo --preset {preset}` | {seconds:.1f} s | {load} | "
                     f"{_table(stdout)} |")  # fmt: skip
        if not args.no_defaults:
            a, p = work / "A", work / "B"
            t_attack, out_a, load = _sau("attack", "--dataset", "digits", "--attack", "badnets",
                                   "--out", str(a), "--quiet", cwd=env_root)  # fmt: skip
            md.print(f"| `sau attack --dataset digits --attack badnets` | {t_attack:.1f} s | "
                     f"{load} | {' '.join(out_a.split()[:12])} |")  # fmt: skip
            t_purify, out_p, load = _sau("purify", "--checkpoint", str(a), "--out", str(p), "--quiet",
                                   cwd=env_root)  # fmt: skip
            md.print(f"| `sau purify` (no other flag) | {t_purify:.1f} s | {load} | "
                     f"{_table(out_p)} |")  # fmt: skip
            md.print(f"| both, the newcomer's path | {t_attack + t_purify:.1f} s | | |")
    md.write(args.markdown)


if __name__ == "__main__":
    main()
