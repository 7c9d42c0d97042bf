"""Digits on a CUDA GPU against the CPU: does the demo give the same answer on both?

The demo's setting (``sau_core.lab.presets.DEMO``: BadNets 10% on 16x16 digits, ``wide_cnn``, 30%
clean data, SAU 64 x 60 rounds), run in one process on the CPU and on the GPU, with the GPU in
three numeric modes:

- ``cuda fp32 strict``: amp and channels-last off, cuDNN deterministic, TF32 off (the CPU's
  arithmetic as closely as a GPU does it);
- ``cuda fp32``: amp and channels-last off, torch's default TF32 setting for cuDNN convolutions;
- ``cuda default``: what SAU Lab runs on a GPU (bf16 autocast, channels-last).

Printed (nothing asserted):

1. **First SAU batch from the same weights** (h0 = the CPU-trained backdoored model): the share of
   perturbation pixels that differ from the CPU's, the largest loss difference and the largest
   weight difference after the step.
2. **Attack training** with the demo's recipe on each device and mode: ACC/ASR/RA and seconds.
   The data augmentation draws from the same seeded CPU generator everywhere, so the runs differ
   only by arithmetic.
3. **SAU from the CPU-trained model** on each device and mode: final ACC/ASR/RA on the full test
   sets, the largest per-round difference of the live ACC/ASR against the CPU's trajectory,
   and seconds.

Usage:

    python bench/bench_gpu_parity.py                 # the demo's sizes (needs a GPU for rows 2-3)
    python bench/bench_gpu_parity.py --quick         # smoke run: 2 epochs, 2 rounds
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import replace

import torch

from bench.common import add_threads, load_now, machine_line, parser, use_threads
from sau_core.attacks import backdoor_test
from sau_core.defenses.sau import purify, sau_step
from sau_core.device import describe
from sau_core.lab.presets import DEMO
from sau_core.pipeline import clean_set, plant_backdoor

MODES = ("cpu fp32", "cuda fp32 strict", "cuda fp32", "cuda default")


@contextlib.contextmanager
def numerics(mode: str):
    """cuDNN switches for ``mode``, restored afterwards."""
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32)  # fmt: skip
    if mode == "cuda fp32 strict":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        (torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = saved  # fmt: skip


def device_of(mode: str) -> str:
    return "cpu" if mode.startswith("cpu") else "cuda"


def fast(mode: str) -> bool:
    return mode == "cuda default"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def first_batch(model, clean, modes) -> None:
    cfg = DEMO.sau
    x, y = clean.x[: cfg.batch_size], clean.y[: cfg.batch_size]
    out = {}
    for mode in modes:
        dev = device_of(mode)
        with numerics(mode):
            h0 = copy.deepcopy(model).to(dev).eval().requires_grad_(False)
            h = copy.deepcopy(model).to(dev).eval()
            opt = torch.optim.Adam(h.parameters(), lr=cfg.lr, betas=(0.9, 0.999), amsgrad=True)
            cl = fast(mode)
            if cl:
                h0 = h0.to(memory_format=torch.channels_last)
                h = h.to(memory_format=torch.channels_last)
            xd = x.to(dev)
            if cl:
                xd = xd.contiguous(memory_format=torch.channels_last)
            delta, stats = sau_step(h, h0, opt, xd, y.to(dev), cfg, None, fast(mode))
            out[mode] = (delta.float().cpu(), stats.values.float().cpu(),
                         {k: v.float().cpu() for k, v in h.state_dict().items()})  # fmt: skip
    d0, s0, w0 = out["cpu fp32"]
    print("| mode | pixels of delta differing from the CPU's | losses max abs diff | "
          "weights after the step max abs diff |")  # fmt: skip
    print("| --- | --- | --- | --- |")
    for mode in modes[1:]:
        d, s, w = out[mode]
        differ = int(((d - d0).abs() > 0).sum())
        weights = max(float((w[k] - w0[k]).abs().max()) for k in w0)
        print(f"| {mode} | {differ} of {d0.numel()} ({100 * differ / d0.numel():.2f}%) | "
              f"{float((s[:6] - s0[:6]).abs().max()):.3g} | {weights:.3g} |")  # fmt: skip


def attack_rows(split, modes, epochs: int):
    models = {}
    print("| mode | ACC | ASR | RA | seconds | load |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mode in modes:
        dev = device_of(mode)
        cfg = replace(DEMO.train, epochs=epochs, amp=fast(mode), channels_last=fast(mode))
        with numerics(mode):
            sync(dev)
            t = time.perf_counter()
            run = plant_backdoor(split, DEMO.attack, DEMO.arch, cfg, device=dev)
            sync(dev)
            seconds = time.perf_counter() - t
        e = run.evaluation
        print(f"| {mode} | {fmt(e.acc)} | {fmt(e.asr)} | {fmt(e.ra)} | {seconds:.1f} | "
              f"{load_now()} |")  # fmt: skip
        models[mode] = run.model.cpu().eval()
    return models


def sau_rows(split, model, clean, bd, modes, rounds: int) -> None:
    print("| mode | ACC | ASR | RA | largest pull | live ACC max diff vs CPU | "
          "live ASR max diff vs CPU | seconds | load |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base = None
    for mode in modes:
        dev = device_of(mode)
        cfg = replace(DEMO.sau, rounds=rounds, amp=fast(mode), channels_last=fast(mode))
        with numerics(mode):
            sync(dev)
            t = time.perf_counter()
            res = purify(model, clean, cfg, test=split.test, backdoor=bd, device=dev)
            sync(dev)
            seconds = time.perf_counter() - t
        acc = [r.acc for r in res.history]
        asr = [r.asr for r in res.history]
        if base is None:
            base = (acc, asr)
        dacc = max(abs(a - b) for a, b in zip(acc, base[0], strict=True))
        dasr = max(abs(a - b) for a, b in zip(asr, base[1], strict=True))
        a = res.after
        pull = max(a.off_target.items(), key=lambda kv: kv[1]) if a.off_target else None
        pulled = "-" if pull is None else f"{pull[1]:.2f} to class {pull[0]}"
        print(f"| {mode} | {fmt(a.acc)} | {fmt(a.asr)} | {fmt(a.ra)} | {pulled} | {dacc:.3f} | "
              f"{dasr:.3f} | {seconds:.1f} | {load_now()} |")  # fmt: skip


def main() -> None:
    ap = parser(__doc__, epilog=True)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, 2 rounds")
    ap.add_argument("--cpu-only", action="store_true", help="CPU rows only (a check of the script)")
    add_threads(ap)
    args = ap.parse_args()
    use_threads(args)
    if not args.cpu_only and not torch.cuda.is_available():
        ap.error(
            "no CUDA GPU here: this bench compares a GPU with the CPU (--cpu-only to check it)"
        )
    modes = MODES[:1] if args.cpu_only else MODES
    epochs = 2 if args.quick else DEMO.train.epochs
    rounds = 2 if args.quick else DEMO.sau.rounds
    print(machine_line())
    if not args.cpu_only:
        print(describe(torch.device("cuda")))
    split = DEMO.data.load()
    print(f"\n## Attack training ({DEMO.attack.name}, {DEMO.arch}, {epochs} epochs)\n")
    models = attack_rows(split, modes, epochs)
    model = models["cpu fp32"]
    clean = clean_set(split, DEMO.clean_ratio, seed=0)
    bd = backdoor_test(split.test, DEMO.attack)
    print(f"\n## First SAU batch from the CPU-trained model ({DEMO.sau.batch_size} images)\n")
    first_batch(model, clean, modes)
    print(f"\n## SAU from the CPU-trained model ({len(clean)} clean images, {rounds} rounds)\n")
    sau_rows(split, model, clean, bd, modes, rounds)


if __name__ == "__main__":
    main()
