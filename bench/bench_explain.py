"""Explain figures: time of the Explain grid per method, and trigger focus before/after SAU.

For each attack (BadNets and Blended by default) this plants a backdoor in the demo's model and
purifies it with SAU, all with the embedded demo's settings (``sau_core.lab.presets.DEMO``: data,
model, training, clean ratio, SAU; the attack's name is swapped in, its target, poisoning ratio
and seed kept), then prints:

1. the time to compute the Explain grid for 8 images with each method: h0's and h's maps, on the
   clean and the triggered versions (4 attributions of 8 images, plus predictions and the shared
   heat-map scale; median of ``--repeats`` after one warm-up);
2. the trigger focus (share of |attribution| inside the pixels the trigger changes) of h0 and of
   h on the triggered test images (those not of the target class), per method: mean +- std over
   the images, with the region's area share, the focus a uniform map would get. A trigger that
   changes nearly every pixel (Blended) has focus 1 by construction; for those a second block
   uses only the pixels changed by more than ``--strong-tol`` (where the key image is strong).

By default each model explains its own prediction on the triggered image (``--target pred``);
``--target attack`` explains the attack's target class for both. ``--quick`` is a smoke run
(1 training epoch, 1 SAU round, 16 focus images): its figures mean nothing. On a CPU shared with
other work, ``--threads 1`` can be many times faster for these small models (fewer hand-offs).

    bash .ci/venv python bench/bench_explain.py [--attacks badnets blended] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from bench.common import add_threads, use_threads
from sau_core.defenses.sau import purify
from sau_core.explain import compare_focus, explain, list_methods
from sau_core.lab.presets import DEMO
from sau_core.pipeline import clean_set, plant_backdoor


def grid_seconds(h0, h, x, x_triggered, method: str, repeats: int) -> float:
    """Median wall time of one Explain grid: both models on the clean and triggered images."""

    def grid() -> None:
        explain((h0, h), x, method)
        explain((h0, h), x_triggered, method)

    grid()  # warm-up: Captum's import, first-call allocations
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        grid()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def fmt(mean: float, std: float) -> str:
    return f"{mean:.3f} +- {std:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attacks", nargs="+", default=["badnets", "blended"])
    ap.add_argument("--methods", nargs="+", default=list_methods())
    ap.add_argument("--images", type=int, default=8, help="images in the Explain grid")
    ap.add_argument("--repeats", type=int, default=3, help="timed grids per method (median)")
    ap.add_argument(
        "--focus-images", type=int, default=0, help="triggered test images for the focus (0: all)"
    )
    ap.add_argument("--target", choices=["pred", "attack"], default="pred")
    ap.add_argument(
        "--strong-tol",
        type=float,
        default=0.1,
        help="for triggers that change most pixels (blended): also the focus on the pixels "
        "changed by more than this",
    )
    ap.add_argument("--device", default="cpu", help="where to train, purify and explain")
    add_threads(ap)
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny training and SAU")
    args = ap.parse_args()

    use_threads(args)
    train_config, sau_config = DEMO.train, DEMO.sau
    if args.quick:
        train_config = dataclasses.replace(train_config, epochs=1)
        sau_config = dataclasses.replace(sau_config, rounds=1)
        args.repeats, args.focus_images = 1, args.focus_images or 16
    split = DEMO.data.load()
    info = split.info
    print(
        f"{info.name} {'x'.join(map(str, info.shape))}, {DEMO.arch}, {train_config.epochs} "
        f"epochs, SAU {sau_config.rounds} rounds on {DEMO.clean_ratio:.0%} clean data, "
        f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads"
        + (" [--quick: figures are meaningless]" if args.quick else ""),
        flush=True,
    )

    grid_rows: dict[str, dict[str, float]] = {m: {} for m in args.methods}
    summary, focus_rows = [], []
    for attack in args.attacks:
        spec = dataclasses.replace(DEMO.attack, name=attack, params={})
        t = time.perf_counter()
        run = plant_backdoor(split, spec, DEMO.arch, train_config, device=args.device)
        clean = clean_set(split, DEMO.clean_ratio)
        result = purify(
            run.model,
            clean,
            sau_config,
            test=split.test,
            backdoor=run.backdoor,
            device=args.device,
        )
        setup = time.perf_counter() - t
        h0, h = run.model, result.model
        summary.append((attack, result.before, result.after, setup))
        print(f"[{attack}] backdoored and purified in {setup:.0f} s", flush=True)

        trigger = spec.trigger(info)
        x_clean = split.test.x[run.backdoor.index]  # (M, C, H, W): test images off the target
        x_grid = x_clean[: args.images]
        x_grid_triggered = trigger(x_grid)
        for method in args.methods:
            seconds = grid_seconds(h0, h, x_grid, x_grid_triggered, method, args.repeats)
            grid_rows[method][attack] = seconds
            print(f"[{attack}] grid {method}: {1000 * seconds:.0f} ms", flush=True)

        x_focus = x_clean[: args.focus_images] if args.focus_images else x_clean
        target = None if args.target == "pred" else spec.target
        t = time.perf_counter()
        focus = compare_focus(h0, h, x_focus, trigger, args.methods, target=target)
        print(f"[{attack}] focus on {len(x_focus)} images in {time.perf_counter() - t:.0f} s")
        for method, cmp in focus.items():
            focus_rows.append((attack, method, cmp))
        if max(c.before.area for c in focus.values()) >= 0.5:  # the region is most of the image
            strong = compare_focus(
                h0, h, x_focus, trigger, args.methods, target=target, tol=args.strong_tol
            )
            label = f"{attack} (change > {args.strong_tol:g})"
            focus_rows.extend((label, method, cmp) for method, cmp in strong.items())

    print()
    print("| attack | ACC h0 -> h | ASR h0 -> h | RA h0 -> h | plant + SAU s |")
    print("| --- | --- | --- | --- | --- |")
    for attack, before, after, setup in summary:
        print(
            f"| {attack} | {before.acc:.3f} -> {after.acc:.3f} | {before.asr:.3f} -> "
            f"{after.asr:.3f} | {before.ra:.3f} -> {after.ra:.3f} | {setup:.0f} |"
        )

    print()
    print(
        f"Explain grid, {args.images} images: h0 and h on clean and triggered images "
        f"(ms, median of {args.repeats})"
    )
    print("| method | " + " | ".join(f"{a} models" for a in args.attacks) + " |")
    print("| --- |" + " --- |" * len(args.attacks))
    for method, row in grid_rows.items():
        print(f"| {method} | " + " | ".join(f"{1000 * row[a]:.0f}" for a in args.attacks) + " |")

    print()
    print(
        f"Trigger focus on triggered test images (target: {args.target}), mean +- std; "
        "area = the region's share of the image, what a uniform map scores"
    )
    print("| attack | method | focus h0 | focus h | change | area | n |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for attack, method, cmp in focus_rows:
        b, a = cmp.before, cmp.after
        print(
            f"| {attack} | {method} | {fmt(b.mean, b.std)} | {fmt(a.mean, a.std)} | "
            f"{cmp.change:+.3f} | {b.area:.3f} | {b.n} / {a.n} |"
        )


if __name__ == "__main__":
    main()
