"""After each defence, is the backdoor gone? Re-tuning and trigger recovery on the ready-made models.

Per ready-made digits model (one per attack, assets/checkpoints) and per defence (digits
defaults, seed 0): the defended model's ASR, its ASR after re-tuning (sau_core.probe: 5 epochs
at lr 0.01 on 500 clean training images and 5 poisoned ones, the setting of Min et al.,
NeurIPS 2024, scaled to digits) and the epoch at which ASR first reached 0.5, beside the same
for a model of the same architecture trained here without poison (the never-backdoored
baseline, trained once per architecture). Per attack also the trigger-recovery score of SAU's
shared adversarial examples (every round's probe batch): for triggers with a region, the share
of the mean perturbation's mass inside it and the lift over an even spread; for whole-image
triggers, the cosine with the trigger's pattern. Prints one line per run with the load.

    python bench/bench_probe.py --threads 2 --markdown docs/results/probe.md
    python bench/bench_probe.py --attacks badnets --defenses sau       # one cell
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import (
    Markdown,
    add_markdown,
    add_threads,
    load_now,
    machine_line,
    parser,
    use_threads,
)
from sau_core.attacks import AttackSpec
from sau_core.data import DataSpec
from sau_core.defenses import DEFENSES, list_defenses
from sau_core.defenses.compare import largest_pull
from sau_core.events import ProbeSnapshot
from sau_core.io.checkpoint import load_checkpoint
from sau_core.lab.presets import DEMO
from sau_core.lab.ready import list_ready
from sau_core.pipeline import backdoor_for, clean_set
from sau_core.probe import ReactivationConfig, match, recover, retune, retune_set
from sau_core.probe.run import never_backdoored


def main() -> None:
    entries, note = list_ready()
    names = [e.name for e in entries]
    ap = parser(__doc__, epilog=True)
    ap.add_argument("--attacks", nargs="+", default=names, choices=names)
    ap.add_argument("--defenses", nargs="+", default=list_defenses(), choices=list_defenses())
    ap.add_argument("--epochs", type=int, default=5, help="re-tuning epochs (default 5)")
    add_threads(ap)
    add_markdown(ap)
    args = ap.parse_args()
    use_threads(args)
    config = ReactivationConfig(epochs=args.epochs)
    md = Markdown("After each defence: re-tuning and trigger recovery")
    print(machine_line())
    md.print(f"Ready-made digits models (16x16, 10% poisoning, target 0), each defence with its "
             f"digits defaults, seed 0. Re-tuning: {config.epochs} epochs, lr {config.lr}, "
             f"{config.clean} clean + {config.poisoned} poisoned training images. *back at*: the "
             f"first re-tuning epoch with ASR >= {config.back} (- : not within "
             f"{config.epochs}).")  # fmt: skip
    md.print()
    baselines: dict[str, torch.nn.Module] = {}
    rows, recovery = [], []
    for entry in [e for e in entries if e.name in args.attacks]:
        ckpt = load_checkpoint(entry.path)
        data = DataSpec.from_dict(entry.data)
        split = data.load()
        spec = AttackSpec.from_dict(entry.attack)
        bd = backdoor_for(split, spec)
        clean = clean_set(split, DEMO.clean_ratio, seed=0)
        retune_data = retune_set(split.train, spec, config)
        if entry.arch not in baselines:
            t = time.perf_counter()
            baselines[entry.arch] = never_backdoored(ckpt, split)
            print(f"[baseline {entry.arch}] trained in {time.perf_counter() - t:.1f} s "
                  f"({load_now()})", flush=True)  # fmt: skip
        base = retune(baselines[entry.arch], split, spec, bd, config, retune_data=retune_data)
        print(f"[{entry.name}] never-backdoored: ASR per epoch "
              f"{' '.join(f'{a:.2f}' for a in base.asr)}", flush=True)  # fmt: skip
        for name in args.defenses:
            d = DEFENSES[name]
            probes: list[ProbeSnapshot] = []

            def keep(event, probes=probes) -> None:
                if isinstance(event, ProbeSnapshot):
                    probes.append(event)

            t = time.perf_counter()
            res = d.run(ckpt.model, clean, d.default_config("digits", seed=0), test=split.test,
                        backdoor=bd, device="cpu", callback=keep)  # fmt: skip
            seconds = time.perf_counter() - t
            t = time.perf_counter()
            re = retune(res.model, split, spec, bd, config, retune_data=retune_data)
            re_seconds = time.perf_counter() - t
            pull, to = largest_pull({"off_target": res.after.off_target})
            row = {"attack": entry.name, "defense": name, "acc": res.after.acc,
                   "asr": res.after.asr, "ra": res.after.ra, "pull": pull, "to": to,
                   "retuned": re.asr[-1], "back_at": re.back_at, "base_retuned": base.asr[-1],
                   "base_back_at": base.back_at}  # fmt: skip
            rows.append(row)
            print(f"  {name:5s} ACC {row['acc']:.3f} ASR {row['asr']:.3f} RA {row['ra']:.3f} "
                  f"pull {pull:.2f} (to {to}) | re-tuned ASR {' '.join(f'{a:.2f}' for a in re.asr)}"
                  f" | {seconds:.1f} s + re-tuning {re_seconds:.1f} s ({load_now()})", flush=True)  # fmt: skip
            if probes:
                deltas = torch.cat([p.delta for p in probes])
                landed = torch.cat([p.pred_h0_adv for p in probes])
                source = torch.cat([p.y for p in probes])
                patterns = recover(deltas, landed, source)
                if patterns:
                    m = match(patterns[0].mean, spec, split.info)
                    recovery.append({"attack": entry.name, "n": len(deltas),
                                     "top": patterns[0].cls, "count": patterns[0].count,
                                     "target": spec.target, **m})  # fmt: skip
    md.print("| attack | defence | ACC | ASR | RA | pull (to) | ASR after re-tuning | back at | "
             "never-backdoored: ASR after re-tuning | back at |")  # fmt: skip
    md.print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        md.print(f"| {r['attack']} | {r['defense']} | {r['acc']:.2f} | {r['asr']:.2f} | "
                 f"{r['ra']:.2f} | {r['pull']:.2f} ({r['to']}) | {r['retuned']:.2f} | "
                 f"{'-' if r['back_at'] is None else r['back_at']} | {r['base_retuned']:.2f} | "
                 f"{'-' if r['base_back_at'] is None else r['base_back_at']} |")  # fmt: skip
    if recovery:
        md.print()
        md.print("Trigger recovery from SAU's shared adversarial examples (all rounds' probe "
                 "batches):")  # fmt: skip
        md.print()
        md.print("| attack | perturbations | most land on (target) | share | match |")
        md.print("|---|---|---|---|---|")
        for r in recovery:
            if r.get("kind") == "region":
                m = (f"{r['inside']:.0%} of the mass in {r['area']:.1%} of the image "
                     f"(lift {r['lift']:.1f})")  # fmt: skip
            elif r.get("kind") == "cosine":
                m = f"cosine {r['cosine']:.2f} (whole-image trigger)"
            else:
                m = "none: " + r["why"]
            md.print(f"| {r['attack']} | {r['n']} | {r['top']} ({r['target']}) | "
                     f"{r['count'] / r['n']:.0%} | {m} |")  # fmt: skip
    md.print()
    md.print(f"Finished {time.strftime('%H:%M')} ({load_now()}).")
    md.write(args.markdown)


if __name__ == "__main__":
    main()
