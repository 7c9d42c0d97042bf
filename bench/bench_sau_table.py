"""SAU results table on digits: every attack, before and after SAU, in the demo setting.

For each attack (all-to-one, target 0, 10% poisoning, the attack's default parameters): plant it
in the demo's model with the demo's training settings, purify with the demo's SAU settings
(``sau_core.lab.presets.DEMO``; every SAU number the reference's except the digits batch size, see
``sau_core.lab.recipes``) and print ACC/ASR/RA before and after on the full test sets, DER,
and the wall times. Two diagnostics per model say why a run works or not: *to target*, the
share of the backdoored model's adversarial examples (one shared-PGD pass at SAU's eps) that land
on the target class (SAU can only unlearn what its examples reach), and *saturated*, the share of
the first round's h0-fooling examples where the model is too sure for SAU's loss to move it
(``sau_core.defenses.sau.saturated_flags``). Usage:

    bash .ci/venv python bench/bench_sau_table.py [--attacks badnets blended sig wanet] [--seeds 0 1]
        [--arch preact_resnet10]
        [--label-smoothing 0.1] [--rounds 100] [--batch-size 64] [--clean-ratio 0.3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from bench.bench_demo_choice import target_share
from bench.common import Markdown, add_markdown, add_threads, load_now, machine_line, use_threads
from sau_core.attacks import ATTACKS, list_attacks
from sau_core.defenses.sau import purify
from sau_core.lab.presets import DEMO
from sau_core.models import list_models
from sau_core.pipeline import clean_set, plant_backdoor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # every attack the defaults can build (the custom trigger needs a picture)
    shipped = [a for a in list_attacks() if ATTACKS[a].example is None]
    ap.add_argument("--attacks", nargs="+", default=shipped, choices=shipped)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--arch", default=DEMO.arch, choices=list_models(),
                    help="the backdoored model (default: the demo's)")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=DEMO.sau.rounds)
    ap.add_argument("--batch-size", type=int, default=DEMO.sau.batch_size)
    ap.add_argument("--clean-ratio", type=float, default=DEMO.clean_ratio)
    ap.add_argument("--label-smoothing", type=float, default=DEMO.train.label_smoothing,
                    help="of the backdoored model's training (default: the demo's)")  # fmt: skip
    add_threads(ap)
    add_markdown(ap)
    args = ap.parse_args()
    use_threads(args)
    md = Markdown(f"SAU on digits, {args.arch}: before and after, per attack and seed")
    train_cfg = replace(DEMO.train, label_smoothing=args.label_smoothing).validate()
    split = DEMO.data.load()
    print(machine_line())
    md.print(
        f"Setting: digits {split.info.shape[1]}x{split.info.shape[2]}, {args.arch}, clean "
        f"{args.clean_ratio:.0%}, label smoothing {args.label_smoothing:g}; SAU {args.rounds} "
        f"rounds, batch {args.batch_size}; all-to-one, target 0, 10% poisoning. *To target*: "
        "share of h0's adversarial examples (one shared-PGD pass) that land on the target; "
        "*saturated*: share of round 1's h0-fooling examples SAU's loss cannot move. Times with "
        "the 1-minute load average when the run ended."
    )
    md.print()
    md.print(
        "| attack | seed | to target | saturated | ACC before | ASR before | RA before | "
        "ACC after | ASR after | RA after | largest pull after | DER | train s | SAU s | load |"
    )
    md.print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows: dict[str, list] = {}
    for name in args.attacks:
        for seed in args.seeds:
            spec = replace(DEMO.attack, name=name, params={}, seed=seed)
            t = time.perf_counter()
            run = plant_backdoor(split, spec, args.arch, replace(train_cfg, seed=seed))
            train_s = time.perf_counter() - t
            clean = clean_set(split, args.clean_ratio, seed=seed)
            cfg = replace(DEMO.sau, rounds=args.rounds, batch_size=args.batch_size, seed=seed)
            _, to_target = target_share(run.model, clean, cfg, spec.target)
            t = time.perf_counter()
            res = purify(run.model, clean, cfg, test=split.test, backdoor=run.backdoor)
            sau_s = time.perf_counter() - t
            first = res.history[0]
            saturated = first.saturated / max(1, first.potential_poison)
            b, a = res.before, res.after
            rows.setdefault(name, []).append((b.acc - a.acc, a.asr))
            pull = max(((int(c), v) for c, v in (a.off_target or {}).items()),
                       key=lambda cv: cv[1], default=None)  # fmt: skip
            pull_s = "-" if pull is None else f"{pull[1]:.2f} (class {pull[0]})"
            md.print(
                f"| {name} | {seed} | {to_target:.2f} | {saturated:.2f} | {b.acc:.3f} | {b.asr:.3f} | {b.ra:.3f} | {a.acc:.3f} | "
                f"{a.asr:.3f} | {a.ra:.3f} | {pull_s} | {res.der():.3f} | {train_s:.1f} | {sau_s:.1f} | {load_now()} |"
            )
    if len(args.seeds) > 1:
        md.print()
        md.print("Over seeds: attack, mean ACC lost (points), ASR after (mean, range), runs "
                 "meeting the target (ASR <= 0.05 and <= 3 points of ACC lost):")  # fmt: skip
        md.print()
        for name, vals in rows.items():
            lost = statistics.mean(v[0] for v in vals) * 100
            asrs = [v[1] for v in vals]
            met = sum(v[1] <= 0.05 and v[0] <= 0.03 for v in vals)
            md.print(f"- {name}: {lost:+.1f} pts ACC lost, ASR after {statistics.mean(asrs):.3f} "
                     f"({min(asrs):.3f}-{max(asrs):.3f}), {met}/{len(vals)} meet the target")  # fmt: skip
    md.write(args.markdown)


if __name__ == "__main__":
    main()
