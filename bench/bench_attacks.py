"""Backdoor table on digits: per attack, ACC/ASR/RA of the backdoored small CNN, clean ACC, time.

All-to-one, target 0, 10% poisoning, the digits training defaults. Usage:

    bash .ci/venv python bench/bench_attacks.py [--resolution 16] [--model small_cnn]
"""

from __future__ import annotations

import argparse
import time

import torch

from sau_core.attacks import AttackSpec, example_params, list_attacks
from sau_core.data import load_digits
from sau_core.models import create_model
from sau_core.pipeline import plant_backdoor
from sau_core.train import default_train_config, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=16)
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    split = load_digits(resolution=args.resolution, seed=args.seed)
    config = default_train_config("digits", seed=args.seed)
    t = time.perf_counter()
    clean = train(create_model(args.model, split.info, seed=args.seed), split.train, config,
                  eval_set=(split.test.x, split.test.y))  # fmt: skip
    t_clean = time.perf_counter() - t
    print(f"digits {args.resolution}x{args.resolution}, {args.model}, {config.epochs} epochs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    print(
        f"clean model: ACC {clean.final.acc:.4f} in {t_clean:.1f} s ({clean.images_per_s:.0f} img/s)"
    )
    print("| attack | ACC | ASR | RA | ACC lost vs clean | poisoned | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in list_attacks():
        t = time.perf_counter()
        # every attack with its defaults (LF computes its pattern when planted); the custom
        # trigger has none and takes its example cross
        params = example_params(name) if name == "custom" else {}
        spec = AttackSpec(name, params, target=0, poison_ratio=0.1, seed=args.seed)
        run = plant_backdoor(split, spec, args.model, config)
        wall = time.perf_counter() - t
        ev = run.evaluation
        print(f"| {name} | {ev.acc:.4f} | {ev.asr:.4f} | {ev.ra:.4f} | "
              f"{100 * (clean.final.acc - ev.acc):+.1f} pts | {len(run.poisoned.poison_idx)} | {wall:.1f} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
