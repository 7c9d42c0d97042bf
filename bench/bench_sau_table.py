"""SAU results table on digits: every attack, before and after SAU, in the demo setting.

For each attack (all-to-one, target 0, 10% poisoning, the attack's default parameters): plant it
in the demo's model with the demo's training settings, purify with the demo's SAU settings
(``sau_core.pipeline.DEMO``; every SAU number the reference's except the digits batch size, see
``sau_core.sau.SAU_DEFAULTS``) and print ACC/ASR/RA before and after on the full test sets, DER,
and the wall times. Usage:

    bash .ci/venv python bench/bench_sau_table.py [--attacks badnets blended sig wanet] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from sau_core.attacks import list_attacks
from sau_core.pipeline import DEMO, clean_set, plant_backdoor
from sau_core.sau import purify


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attacks", nargs="+", default=list_attacks(), choices=list_attacks())
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--rounds", type=int, default=DEMO.sau.rounds)
    args = ap.parse_args()
    split = DEMO.data.load()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; digits "
        f"{split.info.shape[1]}x{split.info.shape[2]}, {DEMO.arch}, clean {DEMO.clean_ratio:.0%}, "
        f"SAU {args.rounds} rounds, batch {DEMO.sau.batch_size}"
    )
    print(
        "| attack | seed | ACC before | ASR before | RA before | ACC after | ASR after | "
        "RA after | DER | train s | SAU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows: dict[str, list] = {}
    for name in args.attacks:
        for seed in args.seeds:
            spec = replace(DEMO.attack, name=name, params={}, seed=seed)
            t = time.perf_counter()
            run = plant_backdoor(split, spec, DEMO.arch, replace(DEMO.train, seed=seed))
            train_s = time.perf_counter() - t
            clean = clean_set(split, DEMO.clean_ratio, seed=seed)
            cfg = replace(DEMO.sau, rounds=args.rounds, seed=seed)
            t = time.perf_counter()
            res = purify(run.model, clean, cfg, test=split.test, backdoor=run.backdoor)
            sau_s = time.perf_counter() - t
            b, a = res.before, res.after
            rows.setdefault(name, []).append((b.acc - a.acc, a.asr))
            print(
                f"| {name} | {seed} | {b.acc:.3f} | {b.asr:.3f} | {b.ra:.3f} | {a.acc:.3f} | "
                f"{a.asr:.3f} | {a.ra:.3f} | {res.der():.3f} | {train_s:.1f} | {sau_s:.1f} |",
                flush=True,
            )
    if len(args.seeds) > 1:
        print("\nmeans over seeds: attack, ACC lost (points), ASR after")
        for name, vals in rows.items():
            lost = statistics.mean(v[0] for v in vals) * 100
            asr = statistics.mean(v[1] for v in vals)
            print(f"- {name}: {lost:+.1f} pts ACC lost, ASR after {asr:.3f}")


if __name__ == "__main__":
    main()
