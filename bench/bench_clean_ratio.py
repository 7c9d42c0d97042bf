"""SAU on the ready-made digits models with smaller clean sets: the figures behind the warning for
a clean ratio under the digits default (``sau_core.lab.caveats.sau_caveats``, ``_DIGITS_CLEAN``).

Each ready-made model (BadNets and Blended by default; the shipped checkpoints, so the backdoored
model is the same every time) is purified with the digits defaults except the clean ratio.
Prints ACC/ASR/RA after SAU and the SAU time with the load beside it; asserts nothing::

    bash .ci/venv python bench/bench_clean_ratio.py [--ratios 0.05 0.1 0.2 0.3] [--threads 2]
        [--markdown docs/results/clean_ratio.md]
"""

from __future__ import annotations

import time

from bench.common import (
    Markdown,
    add_markdown,
    add_threads,
    load_now,
    machine_line,
    parser,
    use_threads,
)
from sau_core.io.checkpoint import load_checkpoint
from sau_core.lab.presets import DEMO
from sau_core.lab.ready import list_ready
from sau_core.pipeline import purify_checkpoint


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--attacks", nargs="+", default=["badnets", "blended"])
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3])
    add_threads(ap)
    add_markdown(ap)
    args = ap.parse_args()
    use_threads(args)
    entries = {e.name: e for e in list_ready()[0]}
    split = DEMO.data.load()
    md = Markdown("SAU on the ready-made digits models, by clean ratio")
    print(machine_line())
    md.print(f"The digits defaults ({DEMO.sau.rounds} rounds, batch {DEMO.sau.batch_size}) but "
             "the clean ratio; the shipped checkpoints.")  # fmt: skip
    md.print()
    md.print("| attack | clean ratio | clean images | ACC before -> after | ASR before -> after | "
             "RA after | largest pull after | SAU s | load |")  # fmt: skip
    md.print("|---|---|---|---|---|---|---|---|---|")
    for name in args.attacks:
        for ratio in args.ratios:
            ckpt = load_checkpoint(entries[name].path)
            spec = ckpt.sidecar.attack_spec()
            t = time.perf_counter()
            r = purify_checkpoint(ckpt, split, DEMO.sau, clean_ratio=ratio, spec=spec)
            seconds = time.perf_counter() - t
            c, pull = max((item for item in (r.after.off_target or {}).items()),
                          key=lambda cv: cv[1], default=("-", float("nan")))  # fmt: skip
            md.print(f"| {name} | {ratio:g} | {round(ratio * len(split.train))} | "
                     f"{r.before.acc:.3f} -> {r.after.acc:.3f} | {r.before.asr:.3f} -> "
                     f"{r.after.asr:.3f} | {r.after.ra:.3f} | {pull:.2f} (class {c}) | "
                     f"{seconds:.1f} | {load_now()} |")  # fmt: skip
    md.write(args.markdown)


if __name__ == "__main__":
    main()
