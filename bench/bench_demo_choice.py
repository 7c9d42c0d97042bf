"""Choose the embedded demo's setting by measurement: SAU on a backdoored model on digits.

For each resolution, training augmentation, clean ratio and SAU batch size: plant the attack
(10% poisoning, target 0) in the model (``--arch``, default the demo's), run SAU (every other
setting the reference's) for --rounds rounds, and print where h0's adversarial examples land
(the share that reach the target class: SAU can only unlearn a backdoor its shared adversarial
examples reach), ACC/ASR after selected rounds, and the wall time of training and of SAU on
this machine. The choice table in docs/results.md was measured with ``--arch small_cnn``. Usage:

    bash .ci/venv python bench/bench_demo_choice.py                      # the chosen demo
    bash .ci/venv python bench/bench_demo_choice.py --resolutions 16 32 --augments none crop \\
        --batch-sizes 256 64 32 --rounds 100
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from bench.common import add_threads, use_threads
from sau_core.attacks import AttackSpec
from sau_core.cli import CLIError, _parse_params
from sau_core.data import load_digits
from sau_core.defenses.sau import purify, shared_pgd
from sau_core.lab.presets import DEMO
from sau_core.models import list_models
from sau_core.pipeline import clean_set, plant_backdoor


def target_share(model, clean, cfg, target: int) -> tuple[float, float]:
    """Share of clean images h0 gets wrong at eps (one shared-PGD pass, h = h0), and of those
    the share sent to the target class."""
    m = model.eval()
    with torch.no_grad():
        pred = m(clean.x).argmax(1)
    delta = shared_pgd(m, m, clean.x, clean.y, pred, pred, cfg).delta
    with torch.no_grad():
        adv_pred = m(clean.x + delta).argmax(1)
    adv = adv_pred != pred
    to_target = float((adv_pred[adv] == target).float().mean()) if adv.any() else 0.0
    return float(adv.float().mean()), to_target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=DEMO.sau.rounds)
    ap.add_argument("--resolutions", type=int, nargs="+", default=[DEMO.data.kwargs["resolution"]])
    ap.add_argument("--augments", nargs="+", default=[DEMO.train.augment])
    ap.add_argument("--ratios", type=float, nargs="+", default=[DEMO.clean_ratio])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[DEMO.sau.batch_size])
    ap.add_argument("--crop-pad", type=int, default=DEMO.train.crop_pad, help="0: side // 8")
    ap.add_argument("--attack", default=DEMO.attack.name)
    ap.add_argument("--arch", default=DEMO.arch, choices=list_models())
    ap.add_argument("--key", default="", help="Blended: path of the key image (default: SAU Lab's)")
    ap.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an attack parameter, e.g. alpha=0.1 (repeatable; as `sau attack --param`)",
    )
    ap.add_argument("--epochs", type=int, default=DEMO.train.epochs)
    ap.add_argument("--weight-decay", type=float, default=DEMO.train.weight_decay)
    ap.add_argument("--label-smoothing", type=float, default=DEMO.train.label_smoothing)
    ap.add_argument("--seed", type=int, default=0)
    add_threads(ap)
    args = ap.parse_args()
    use_threads(args)
    marks = [r for r in (10, 20, 30, 40, 50, 60, 80, 100, 150, 200) if r < args.rounds]
    marks.append(args.rounds)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.arch}, "
          f"attack {args.attack}, "
          f"epochs {args.epochs}, weight decay {args.weight_decay:g}, label smoothing "
          f"{args.label_smoothing:g}{', key ' + args.key if args.key else ''}"
          f"{', params ' + ' '.join(args.param) if args.param else ''}")  # fmt: skip
    print(
        "res  augment clean batch | train_s  ACC0  ASR0  adv  ->target | "
        + " | ".join(f"r{r}: ACC  ASR " for r in marks)
        + " | sau_s  total_s"
    )
    for res in args.resolutions:
        split = load_digits(resolution=res, seed=args.seed)
        params = {"image": args.key} if args.key else {}
        try:  # the sau CLI's own --param parser: numbers and JSON values become values
            params.update(_parse_params(args.param))
        except CLIError as err:
            raise SystemExit(str(err)) from None
        spec = replace(DEMO.attack, name=args.attack, params=params, seed=args.seed)
        for aug in args.augments:
            t = time.perf_counter()
            tcfg = replace(DEMO.train, augment=aug, crop_pad=args.crop_pad, seed=args.seed,
                           epochs=args.epochs, weight_decay=args.weight_decay,
                           label_smoothing=args.label_smoothing).validate()  # fmt: skip
            run = plant_backdoor(split, AttackSpec.from_dict(spec.to_dict()), args.arch, tcfg)
            train_s = time.perf_counter() - t
            for ratio in args.ratios:
                clean = clean_set(split, ratio, seed=args.seed)
                for bs in args.batch_sizes:
                    cfg = replace(DEMO.sau, rounds=args.rounds, batch_size=bs, seed=args.seed)
                    adv, to_target = target_share(run.model, clean, cfg, spec.target)
                    t = time.perf_counter()
                    res_sau = purify(run.model, clean, cfg, test=split.test, backdoor=run.backdoor)
                    sau_s = time.perf_counter() - t
                    h = {r.round: r for r in res_sau.history}
                    cells = " | ".join(f"{h[r].acc:.3f} {h[r].asr:.3f}" for r in marks if r in h)
                    b = res_sau.before
                    print(
                        f"{res:>3d}  {aug:7s} {ratio:.2f}  {bs:>4d}  | {train_s:6.1f}  {b.acc:.3f} "
                        f"{b.asr:.3f} {adv:.2f}  {to_target:.2f}    | {cells} | {sau_s:5.1f}  "
                        f"{train_s + sau_s:6.1f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
