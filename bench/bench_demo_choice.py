"""Choose the embedded demo's setting by measurement: SAU (reference defaults) on digits.

For each resolution and clean ratio: plant BadNets (10%, target 0) in the small CNN, run SAU with
the reference's settings for up to --rounds rounds, and print ACC/ASR after selected rounds and
the seconds per round on this machine. Usage:

    bash .ci/venv python bench/bench_demo_choice.py [--rounds 40] [--resolutions 8 16 32]
"""

from __future__ import annotations

import argparse
import time

import torch

from sau_core.attacks import AttackSpec
from sau_core.data import load_digits
from sau_core.pipeline import clean_set, plant_backdoor
from sau_core.sau import SAUConfig, purify
from sau_core.train import default_train_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--resolutions", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    ap.add_argument("--attack", default="badnets")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    checkpoints = [r for r in (5, 10, 20, 30, 40, 60, 100) if r <= args.rounds]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, attack {args.attack}")
    print(
        "res  clean  n_clean  ACC0   ASR0  | "
        + " | ".join(f"r{r:<3d} ACC   ASR " for r in checkpoints)
        + " | s/round"
    )
    for res in args.resolutions:
        split = load_digits(resolution=res, seed=args.seed)
        run = plant_backdoor(split, AttackSpec(args.attack, seed=args.seed), "small_cnn",
                             default_train_config("digits", seed=args.seed))  # fmt: skip
        for ratio in args.ratios:
            clean = clean_set(split, ratio, seed=args.seed)
            t = time.perf_counter()
            res_sau = purify(run.model, clean, SAUConfig(rounds=args.rounds, seed=args.seed, eval_size=0),
                             test=split.test, backdoor=run.backdoor)  # fmt: skip
            per_round = (time.perf_counter() - t) / max(1, res_sau.rounds_done)
            h = {r.round: r for r in res_sau.history}
            cells = " | ".join(f"     {h[r].acc:.3f} {h[r].asr:.3f}" for r in checkpoints)
            b = res_sau.before
            print(
                f"{res:>3d}  {ratio:.2f}  {len(clean):>7d}  {b.acc:.3f}  {b.asr:.3f} | {cells} | {per_round:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
