"""Every defence on the same backdoored digits models: ACC, ASR, RA, pull, DER and seconds.

The demo setting (digits 16x16, 10% poisoning, target 0, 30% clean data, each attack on its
ready-made model's architecture: sau_core.lab.presets.attack_setup), each defence with its digits
defaults (sau_core.lab.recipes; the papers' settings otherwise). Per attack and seed it trains the
backdoored model (seed = the poisoning's, the training's and the clean subset's), then runs
every defence on it; prints one line per run with the load beside its time, then the table of
means (and the spread over seeds). ``pull``: the largest share of triggered images sent to one
class that is neither their own nor the target (sau_core.metrics.off_target_pull).

    python bench/bench_defenses.py --threads 2 --markdown docs/results/defenses.md
    python bench/bench_defenses.py --attacks badnets --defenses ft fp --seeds 0   # one cell
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    Markdown,
    add_markdown,
    add_threads,
    load_now,
    machine_line,
    parser,
    use_threads,
)
from sau_core.defenses import DEFENSES, list_defenses
from sau_core.defenses.compare import largest_pull
from sau_core.lab.presets import attack_setup
from sau_core.metrics import der
from sau_core.pipeline import clean_set, plant_backdoor

ATTACKS = ("badnets", "blended", "sig", "wanet", "lc", "lf", "ssba", "inputaware")
DEFAULT_ATTACKS = ("badnets", "blended", "sig", "wanet")


def _mean(values: list) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.mean(vals):.2f}±{statistics.pstdev(vals):.2f}"


def main() -> None:
    ap = parser(__doc__, epilog=True)
    ap.add_argument("--attacks", nargs="+", default=list(DEFAULT_ATTACKS), choices=ATTACKS)
    ap.add_argument("--defenses", nargs="+", default=list_defenses(), choices=list_defenses())
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", action="append", default=[], metavar="DEFENCE.KEY=VALUE",
                    help="a setting of one defence over its defaults, e.g. anp.rounds=500")  # fmt: skip
    ap.add_argument("--paper", action="store_true",
                    help="each defence with its paper's settings, not digits' (sau_core.lab.recipes)")  # fmt: skip
    add_threads(ap)
    add_markdown(ap)
    args = ap.parse_args()
    use_threads(args)
    overrides: dict[str, dict] = {}
    for item in args.set:
        name, _, rest = item.partition(".")
        key, _, value = rest.partition("=")
        if name not in DEFENSES or not key or not value:
            ap.error(
                f"--set {item!r}: expected DEFENCE.KEY=VALUE with DEFENCE one of {list(DEFENSES)}"
            )
        try:
            overrides.setdefault(name, {})[key] = json.loads(value)
        except json.JSONDecodeError:  # a word: augment=crop
            overrides.setdefault(name, {})[key] = value
    md = Markdown("Six defences on the same backdoored digits models")
    print(machine_line())
    md.print(
        "Setting: the demo's (digits 16x16, 10% poisoning, all-to-one target 0, 30% clean data; "
        "each attack on its ready-made model's architecture). Each defence with its "
        + ("paper's settings" if args.paper else "digits defaults")
        + (f", with {', '.join(args.set)}." if args.set else ".")
        + " *pull*: the largest share of triggered images sent to one class that is "
        "neither their own nor the target. Times: seconds per run, with the 1-minute load "
        "average when the run ended."
    )
    md.print()
    results: dict[tuple[str, str], list[dict]] = {}
    for attack in args.attacks:
        for seed in args.seeds:
            setup = attack_setup(attack)
            spec = replace(setup.attack, seed=seed)
            train_cfg = replace(setup.train, seed=seed)
            split = setup.data.load()
            t = time.perf_counter()
            run = plant_backdoor(split, spec, setup.arch, train_cfg)
            total = time.perf_counter() - t
            print(f"[{attack} seed {seed}] {setup.arch} trained in {total:.1f} s "
                  f"(of which training {run.result.elapsed:.1f} s; the rest poisoning, with any "
                  f"surrogate model) ({load_now()}): ACC {run.evaluation.acc:.3f} "
                  f"ASR {run.evaluation.asr:.3f} RA {run.evaluation.ra:.3f}", flush=True)  # fmt: skip
            clean = clean_set(split, setup.clean_ratio, seed=seed)
            bd = run.backdoor  # the triggered test set, as planted (LF: its pattern)
            before = None
            for name in args.defenses:
                entry = DEFENSES[name]
                extra = {"seed": seed, **overrides.get(name, {})}
                config = (entry.config.from_dict(extra) if args.paper
                          else entry.default_config("digits", **extra))  # fmt: skip
                t = time.perf_counter()
                res = entry.run(run.model, clean, config, test=split.test, backdoor=bd,
                                device="cpu")  # fmt: skip
                seconds = time.perf_counter() - t
                before = res.before
                pull, to = largest_pull({"off_target": res.after.off_target})
                row = {"acc": res.after.acc, "asr": res.after.asr, "ra": res.after.ra,
                       "pull": pull, "to": to, "der": der(res.before, res.after),
                       "seconds": seconds}  # fmt: skip
                results.setdefault((attack, name), []).append(row)
                print(f"  {name:5s} ACC {row['acc']:.3f} ASR {row['asr']:.3f} RA {row['ra']:.3f} "
                      f"pull {pull:.3f} (to {to}) DER {row['der']:.3f}  {seconds:6.1f} s "
                      f"({load_now()})", flush=True)  # fmt: skip
            b_pull, _ = largest_pull({"off_target": before.off_target})
            results.setdefault((attack, "none"), []).append(
                {
                    "acc": before.acc,
                    "asr": before.asr,
                    "ra": before.ra,
                    "pull": b_pull,
                    "der": None,
                    "seconds": None,
                }  # fmt: skip
            )
    md.print(f"Seeds {', '.join(map(str, args.seeds))}: mean±sd over seeds.")
    md.print()
    md.print("| attack | defence | ACC | ASR | RA | pull | DER | seconds |")
    md.print("|---|---|---|---|---|---|---|---|")
    for attack in args.attacks:
        for name in ["none", *args.defenses]:
            rows = results.get((attack, name), [])
            cells = [_mean([r[k] for r in rows]) for k in ("acc", "asr", "ra", "pull", "der")]
            secs = [r["seconds"] for r in rows if r["seconds"] is not None]
            sec = f"{statistics.mean(secs):.1f}" if secs else "-"
            label = "none (backdoored)" if name == "none" else name
            md.print(f"| {attack} | {label} | " + " | ".join(cells) + f" | {sec} |")
    md.print()
    md.print(f"Finished {time.strftime('%H:%M')} ({load_now()}).")
    md.write(args.markdown)


if __name__ == "__main__":
    main()
