"""SAU speed: images/s of one round, the optimised sau_core.defenses.sau against the reference loop.

One run measures, and prints (nothing is asserted):

1. **Ratio at equal numbers.** Images/s of ONE SAU round (default config: 5 PGD steps, batch 256,
   no shuffling, no probe) for the optimised implementation (``sau_core.defenses.sau.purify`` with
   ``rounds=1``) and the reference-equivalent loop (``bench/sau_reference.py``), for the small CNN
   (``--digits-arch wide_cnn`` for the demo's model) on real digits (BadNets-backdoored first;
   resolution per ``--resolution``, N clean images drawn from the training split) and for
   PreAct-ResNet18 on random 32x32x3 tensors (random weights). Before timing, both paths run the
   first batch from the same weights and the largest differences of their perturbations, losses,
   counts and updated weights are printed, so the ratio is read at equal numbers (on the CPU, fp32
   contiguous, tests/test_sau.py requires them equal; channels-last, which purify uses, rounds
   differently, and the check says by how much; on CUDA, cuDNN's kernels may differ slightly, and
   the bf16 row is the fast path as it really runs on a GPU, so its differences are bf16's), with
   the ratio of the two paths' FLOPs on that batch (FlopCounterMode), a figure that does not depend
   on the machine's load. Each path is warmed up on one batch first (not with --quick); the best of
   ``--repeats`` rounds is kept, every round starting from the same weights. The reference gets its
   clean set already on the device; its h0's parameters require grad, as in the authors' loop (h0
   there is a freshly loaded model that nobody freezes, so PGD's backward also builds h0's weight
   gradients). The equality check runs it with h0 frozen, as tests/test_sau.py does: the numbers
   are the same either way.
2. **Peak memory.** CPU: the peak resident set size of a whole SAU run on digits (the demo's
   clean ratio, SAU settings and model, freshly initialised, live evaluation on), run in a
   fresh child process that reads its own high-water mark (``VmHWM`` in /proc/self/status). Not
   ``getrusage(RUSAGE_CHILDREN).ru_maxrss``: Linux carries the parent's RSS at spawn time into a
   child's ru_maxrss (a bare ``python -c pass`` child of a 900 MiB parent reports 900 MiB), so
   after the ratio runs it would report the parent, not SAU. CUDA:
   ``torch.cuda.max_memory_allocated`` during the full run of part 3.
3. **CUDA only** (skipped, with a line saying so, without a GPU): the seconds of one full default
   SAU run on PreAct-ResNet18 (2,500 random 32x32x3 clean images, 100 rounds, live evaluation on
   10,000 random test images with a BadNets trigger) and the model FLOP utilisation: the FLOPs of
   one round counted with ``torch.utils.flop_counter.FlopCounterMode``, divided by the round's
   time and by the GPU's dense bf16 peak (``--peak-tflops``; 989 TFLOP/s, the H100/H200 SXM
   figure, unless told otherwise; the assumed peak is printed).

Usage:

    bash .ci/venv python bench/bench_sau_speed.py                  # full measurement
    bash .ci/venv python bench/bench_sau_speed.py --quick          # smoke run (tiny sizes)
    bash .ci/venv python bench/bench_sau_speed.py --devices cuda --peak-tflops 989
    bash .ci/venv python bench/bench_sau_speed.py --devices cuda --cuda-ahead 1 2 1000
    bash .ci/venv python bench/bench_sau_speed.py --skip-resnet-cpu --resolution 32
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.common import parser
from bench.sau_reference import reference_round
from sau_core.attacks import AttackSpec, backdoor_test
from sau_core.data import DatasetInfo, ImageData, load_digits
from sau_core.defenses.sau import SAUConfig, purify, sau_step
from sau_core.device import describe, pick_device
from sau_core.lab.presets import DEMO
from sau_core.models import create_model, list_models
from sau_core.pipeline import clean_set, plant_backdoor
from sau_core.train import default_train_config

H200_BF16_DENSE_TFLOPS = 989.0  # NVIDIA's dense (no sparsity) bf16 Tensor Core peak, H100/H200 SXM
BATCH_FIELDS = ("l_cl", "l_at", "l_shared", "loss", "l_adv", "l_share")  # sau_step's stats 0..5


# ------------------------------------------------------------------------------------ data
def random_data(n: int, seed: int, size: int = 32) -> ImageData:
    """``n`` uniform-noise 3 x size x size images with random labels (CIFAR-10's geometry)."""
    info = DatasetInfo("random", 10, (3, size, size), (0.5,) * 3, (0.29,) * 3, natural=True)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    return ImageData(x, torch.randint(0, 10, (n,), generator=g), info)


def sample(data: ImageData, n: int, seed: int) -> ImageData:
    """``n`` images of ``data``, seeded; with repetition only when n exceeds its size."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)
    if n > len(idx):
        idx = torch.cat([idx, torch.randint(0, len(data), (n - len(idx),), generator=g)])
    return data.subset(idx[:n])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def frozen(model: torch.nn.Module, device: torch.device, fmt=torch.contiguous_format):
    m = copy.deepcopy(model).to(device=device, memory_format=fmt).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def trainable(model: torch.nn.Module, device: torch.device, fmt=torch.contiguous_format):
    m = copy.deepcopy(model).to(device=device, memory_format=fmt).eval()
    for p in m.parameters():
        p.requires_grad_(True)
    return m


def adam(model: torch.nn.Module, cfg: SAUConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), amsgrad=True)


# ---------------------------------------------------------------------- 1. equal numbers
def first_batch_check(model, data: ImageData, cfg: SAUConfig, device, amp: bool, cl: bool) -> str:
    """Run the first batch through both paths from the same weights; describe the differences."""
    fmt = torch.channels_last if cl else torch.contiguous_format
    x, y = data.x[: cfg.batch_size].to(device), data.y[: cfg.batch_size].to(device)
    h0_ref, h_ref = frozen(model, device), trainable(model, device)
    with FlopCounterMode(display=False) as ref_flops:
        rec = reference_round(
            h_ref, h0_ref, adam(h_ref, cfg), x, y, cfg, num_classes=data.info.num_classes
        )[0]
    h0, h = frozen(model, device, fmt), trainable(model, device, fmt)
    xf = x.contiguous(memory_format=fmt)
    with FlopCounterMode(display=False) as fast_flops:
        delta, stats = sau_step(h, h0, adam(h, cfg), xf, y, cfg, None, amp)
    v = stats.values.tolist()
    d = (delta.float() - rec["delta"]).abs()
    losses = max(abs(v[i] - rec[k]) for i, k in enumerate(BATCH_FIELDS))
    weights = max(
        float((a.float() - b.float()).abs().max())
        for a, b in zip(h.state_dict().values(), h_ref.state_dict().values(), strict=True)
    )
    return (
        f"delta max|diff| {float(d.max()):.3g} "
        f"({int((d > 0).sum())} of {d.numel()} pixels differ); "
        f"losses max|diff| {losses:.3g}; PGD steps {int(v[6])}/{rec['pgd_steps']}; "
        f"potential_poison {int(v[12])}/{rec['potential_poison']}; "
        f"weights after the step max|diff| {weights:.3g}; FLOPs reference/fast "
        f"{ref_flops.get_total_flops() / max(1, fast_flops.get_total_flops()):.2f}x "
        f"(FlopCounterMode, this batch)"
    )


def time_reference(model, data: ImageData, cfg: SAUConfig, device) -> tuple[float, float]:
    """Seconds of one reference round, and its mean PGD steps per batch."""
    x, y = data.x.to(device), data.y.to(device)
    h0, h = trainable(model, device), trainable(model, device)  # h0 not frozen, as the authors'
    opt = adam(h, cfg)
    sync(device)
    t = time.perf_counter()
    records = reference_round(h, h0, opt, x, y, cfg, num_classes=data.info.num_classes)
    sync(device)
    seconds = time.perf_counter() - t
    return seconds, sum(r["pgd_steps"] for r in records) / len(records)


def time_fast(model, data: ImageData, cfg: SAUConfig, device) -> tuple[float, float]:
    """Seconds of one round of ``purify`` (its own round timer), and its mean PGD steps."""
    steps: list[int] = []

    def on_event(event) -> None:
        if hasattr(event, "pgd_steps"):
            steps.append(event.pgd_steps)

    res = purify(model, data, replace(cfg, rounds=1), device=device, callback=on_event)
    return res.elapsed, sum(steps) / max(1, len(steps))


def ratio_case(name: str, label: str, model, data: ImageData, device, args, notes: list) -> None:
    base = SAUConfig(batch_size=args.batch, shuffle=False, probe_size=0, seed=args.seed)
    variants = [("reference fp32", None)]
    if device.type == "cuda":
        variants += [
            ("sau_core fp32", replace(base, amp=False, channels_last=False)),
            ("sau_core bf16+CL", base),
        ]
    else:  # fp32 both, contiguous and channels-last (what purify runs on a CPU)
        variants += [
            ("sau_core fp32", replace(base, channels_last=False)),
            ("sau_core fp32+CL", base),
        ]
    repeats = args.repeats
    if repeats is None:
        repeats = 1 if (device.type == "cpu" and name == "preact_resnet18") else 3
    warm = data.subset(torch.arange(min(len(data), args.batch)))
    results = {}
    for path, cfg in variants:
        if cfg is None:
            if args.warmup:
                time_reference(model, warm, base, device)
            runs = [time_reference(model, data, base, device) for _ in range(repeats)]
        else:
            if args.warmup:
                time_fast(model, warm, cfg, device)
            runs = [time_fast(model, data, cfg, device) for _ in range(repeats)]
        results[path] = min(runs)
    ref_s = results["reference fp32"][0]
    dev = "cpu" if device.type == "cpu" else describe(device)
    for path, (seconds, steps) in results.items():
        print(
            f"| {name} | {label} | {dev} | {path} | {len(data)} | {args.batch} | {seconds:.3f} | "
            f"{len(data) / seconds:,.0f} | {ref_s / seconds:.2f}x | {steps:.2f} |",
            flush=True,
        )
    for path, cfg in variants[1:]:
        check = first_batch_check(
            model,
            data,
            base,
            device,
            cfg.amp and device.type == "cuda",
            cfg.channels_last and device.type in ("cuda", "cpu"),
        )
        notes.append(
            f"- {name}, {label}, {device.type}, first batch of {args.batch}, {path} vs "
            f"reference: {check}"
        )


def digits_case(args):
    split = load_digits(resolution=args.resolution, seed=args.seed)
    if args.epochs > 0:
        spec = AttackSpec("badnets", target=0, poison_ratio=0.1, seed=args.seed)
        tcfg = default_train_config("digits", epochs=args.epochs, seed=args.seed)
        run = plant_backdoor(split, spec, args.digits_arch, tcfg, device="cpu")
        model = run.model.cpu()
        what = (
            f"BadNets {args.digits_arch} (ACC {run.evaluation.acc:.3f}, "
            f"ASR {run.evaluation.asr:.3f})"
        )
    else:
        model = create_model(args.digits_arch, split.info, seed=args.seed)
        what = f"{args.digits_arch}, random weights"
    r = args.resolution
    return model, sample(split.train, args.n, args.seed), f"digits 1x{r}x{r}", what


# ------------------------------------------------------------------------- 2. CPU memory
def rss_kib(field: str = "VmRSS") -> int:
    """This process's resident set (``VmRSS``) or its high-water mark (``VmHWM``), in KiB.

    Read from /proc on Linux; elsewhere ru_maxrss (the peak; bytes on macOS, KiB on Linux).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def memory_child(args) -> None:
    """In a child process: one whole SAU run on digits on the CPU; prints a JSON line."""
    split = load_digits(resolution=args.resolution, seed=args.seed)
    model = create_model(DEMO.arch, split.info, seed=args.seed)
    clean = clean_set(split, DEMO.clean_ratio, seed=args.seed)
    bd = backdoor_test(split.test, AttackSpec("badnets", target=0, seed=args.seed))
    cfg = replace(DEMO.sau, rounds=args.mem_rounds, seed=args.seed)
    before = rss_kib("VmRSS")
    t = time.perf_counter()
    purify(model, clean, cfg, test=split.test, backdoor=bd, device="cpu")
    seconds = time.perf_counter() - t
    peak = rss_kib("VmHWM")
    print(
        json.dumps(
            {
                "before_kib": before,
                "peak_kib": peak,
                "seconds": seconds,
                "n_clean": len(clean),
                "rounds": cfg.rounds,
            }
        )
    )


def cpu_memory(args) -> None:
    cmd = [
        sys.executable,
        __file__,
        "--memory-child",
        "--resolution",
        str(args.resolution),
        "--mem-rounds",
        str(args.mem_rounds),
        "--seed",
        str(args.seed),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(f"CPU peak memory: the child run failed:\n{out.stderr[-2000:]}")
        return
    child = json.loads(out.stdout.strip().splitlines()[-1])
    peak = child["peak_kib"]
    print(
        f"CPU peak RSS of a whole SAU run on digits {args.resolution}x{args.resolution} "
        f"({DEMO.arch}, {child['n_clean']} clean images = demo ratio {DEMO.clean_ratio}, "
        f"{child['rounds']} rounds, live + full evaluation, {child['seconds']:.1f} s): "
        f"{peak / 1024:.0f} MiB (the child's VmHWM); its resident set after imports, "
        f"data and model, just before purify: {child['before_kib'] / 1024:.0f} MiB, so the run "
        f"peaks {(child['peak_kib'] - child['before_kib']) / 1024:.0f} MiB above that"
    )


# ------------------------------------------------------------------- 3. CUDA full run, MFU
def full_run(args, device: torch.device) -> None:
    """The full default run, its peak GPU memory and the MFU (meant for CUDA; runs anywhere)."""
    cuda = device.type == "cuda"
    clean = random_data(args.full_n, args.seed)
    model = create_model("preact_resnet18", clean.info, seed=args.seed)
    test = random_data(args.full_test_n, args.seed + 1) if args.full_test_n else None
    bd = backdoor_test(test, AttackSpec("badnets", target=0)) if test is not None else None
    cfg = SAUConfig(rounds=args.full_rounds, seed=args.seed)  # everything else: the defaults
    lean = replace(cfg, probe_size=0)

    purify(
        model, random_data(cfg.batch_size, args.seed + 2), replace(lean, rounds=1), device=device
    )  # warm-up (CUDA context, cuDNN), not counted
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t = time.perf_counter()
    res = purify(model, clean, cfg, test=test, backdoor=bd, device=device)
    sync(device)
    wall = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated(device) if cuda else 0
    reserved = torch.cuda.max_memory_reserved(device) if cuda else 0

    with FlopCounterMode(display=False) as counter:
        purify(model, clean, replace(lean, rounds=1), device=device)
    flops = counter.get_total_flops()
    k = args.mfu_rounds
    timed = purify(model, clean, replace(lean, rounds=k), device=device)
    per_round = timed.elapsed / k
    peak_flops = args.peak_tflops * 1e12
    print(f"device: {describe(device)}; TF32 for cuDNN convs: {torch.backends.cudnn.allow_tf32}")
    print(
        f"full default SAU run, PreAct-ResNet18, {len(clean)} random 3x32x32 clean images, "
        f"{res.rounds_done} rounds, batch {cfg.batch_size}, bf16 + channels-last, live eval on "
        f"{min(cfg.eval_size, args.full_test_n)} of {args.full_test_n} test images per round, "
        f"probe {cfg.probe_size}: "
        f"{wall:.1f} s wall ({res.elapsed:.1f} s in the round loop, "
        f"{res.elapsed / max(1, res.rounds_done):.3f} s/round)"
    )
    print(
        f"GPU peak memory of that run: max_memory_allocated {peak / 2**20:,.0f} MiB, "
        f"max_memory_reserved {reserved / 2**20:,.0f} MiB"
    )
    print(
        f"FLOPs of one round (FlopCounterMode, {len(clean)} images, no probe, no eval): "
        f"{flops / 1e12:.2f} TFLOP = {flops / len(clean) / 1e9:.1f} GFLOP per image"
    )
    print(
        f"one round alone: {per_round:.3f} s (mean of {k}) = {len(clean) / per_round:,.0f} img/s "
        f"= {flops / per_round / 1e12:.1f} TFLOP/s"
    )
    print(
        f"model FLOP utilisation, assumed peak {args.peak_tflops:.0f} TFLOP/s dense bf16: "
        f"{100 * flops / per_round / peak_flops:.1f}% per round; "
        f"{100 * flops * res.rounds_done / res.elapsed / peak_flops:.1f}% over the full run's "
        f"round loop (counting only the rounds' FLOPs, not probe or evaluation)"
    )


def cuda_ahead_round(args, device: torch.device, ahead: int) -> None:
    """Seconds per round of the full run's setting with the loop ``ahead`` batches ahead of the
    GPU at most (``sau.CUDA_BATCHES_AHEAD``; set here for this measurement only)."""
    from sau_core.defenses import sau

    clean = random_data(args.full_n, args.seed)
    model = create_model("preact_resnet18", clean.info, seed=args.seed)
    cfg = SAUConfig(rounds=args.mfu_rounds, probe_size=0, seed=args.seed)
    saved, sau.CUDA_BATCHES_AHEAD = sau.CUDA_BATCHES_AHEAD, ahead
    try:
        purify(model, clean, replace(cfg, rounds=1), device=device)  # warm-up
        res = purify(model, clean, cfg, device=device)
    finally:
        sau.CUDA_BATCHES_AHEAD = saved
    print(
        f"CUDA_BATCHES_AHEAD={ahead}: {res.elapsed / res.rounds_done:.3f} s/round "
        f"(mean of {res.rounds_done}, {len(clean)} images, no probe, no evaluation)"
    )


# --------------------------------------------------------------------------------- main
def main() -> None:
    ap = parser(__doc__, epilog=True)
    ap.add_argument(
        "--devices",
        nargs="+",
        default=None,
        help="devices for the ratio (default: cpu, and cuda when available)",
    )
    ap.add_argument(
        "--resolution",
        type=int,
        default=16,
        choices=(8, 16, 32),
        help="digits resolution (ratio and CPU memory)",
    )
    ap.add_argument("--n", type=int, default=1024, help="digits clean images in the timed round")
    ap.add_argument(
        "--digits-arch",
        default="small_cnn",
        choices=list_models(),
        help="the model of the digits ratio (default small_cnn; the demo's is wide_cnn)",
    )
    ap.add_argument(
        "--n-resnet",
        type=int,
        default=None,
        help="random images in the ResNet round (default: 256 on CPU, 1024 on CUDA)",
    )
    ap.add_argument("--batch", type=int, default=256, help="SAU batch size for the ratio")
    ap.add_argument(
        "--epochs",
        type=int,
        default=30,
        help="epochs to plant the digits backdoor (0: random weights)",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed rounds per path, best kept (default 3; 1 for ResNet on CPU)",
    )
    ap.add_argument(
        "--skip-resnet-cpu",
        action="store_true",
        help="no PreAct-ResNet18 ratio on the CPU (minutes on 2 cores)",
    )
    ap.add_argument(
        "--mem-rounds",
        type=int,
        default=DEMO.sau.rounds,
        help="rounds of the CPU memory run (default: the demo's)",
    )
    ap.add_argument("--full-n", type=int, default=2500, help="clean images of the CUDA full run")
    ap.add_argument("--full-rounds", type=int, default=100, help="rounds of the CUDA full run")
    ap.add_argument(
        "--full-test-n",
        type=int,
        default=10000,
        help="random test images for the CUDA full run's evaluation (0: none)",
    )
    ap.add_argument("--mfu-rounds", type=int, default=5, help="rounds timed for the MFU")
    ap.add_argument(
        "--peak-tflops",
        type=float,
        default=H200_BF16_DENSE_TFLOPS,
        help="GPU dense bf16 peak in TFLOP/s for the MFU (default: H200's 989)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny sizes (batch 32, 1-epoch backdoor, ResNet batch 8, "
        "1 round everywhere); the figures mean nothing",
    )
    ap.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="skip the uncounted warm-up batch of each path (--quick does)",
    )
    ap.add_argument(
        "--skip-cpu-memory",
        action="store_true",
        help="no CPU peak-memory run (part 2; a whole demo SAU run on the CPU)",
    )
    ap.add_argument(
        "--cuda-ahead",
        type=int,
        nargs="+",
        default=None,
        help="CUDA only: time the full run's rounds (part 3) with each of these values of "
        "sau.CUDA_BATCHES_AHEAD (how far the loop may run ahead of the GPU; default: the "
        "library's value only)",
    )
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args)
        return
    if args.quick:
        args.batch, args.n, args.epochs, args.repeats, args.mem_rounds = 32, 64, 1, 1, 1
        args.warmup = False
        args.full_n, args.full_rounds, args.full_test_n, args.mfu_rounds = 512, 2, 1000, 1

    cuda = torch.cuda.is_available()
    names = args.devices or (["cpu", "cuda"] if cuda else ["cpu"])
    devices = [pick_device(d) for d in names]
    print(
        f"torch {torch.__version__}; {'; '.join(describe(d) for d in devices)}"
        f"{' [--quick: smoke figures only]' if args.quick else ''}"
    )
    print(
        "one SAU round, default config (Linf eps 0.2, 5 PGD steps, init max), no shuffle, "
        "no probe; img/s = clean images per second of the round"
    )
    print()
    print(
        "| model | input | device | path | N | batch | s/round | img/s | vs reference | "
        "PGD steps/batch |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    model, data, label, what = digits_case(args)
    notes: list[str] = []
    for device in devices:
        ratio_case(args.digits_arch, label, model, data, device, args, notes)
    resnet_args = copy.copy(args)
    if args.quick:
        resnet_args.batch = 8
    for device in devices:
        if device.type == "cpu" and args.skip_resnet_cpu:
            continue
        n = args.n_resnet or (
            resnet_args.batch if args.quick else 256 if device.type == "cpu" else 1024
        )
        rdata = random_data(n, args.seed)
        rmodel = create_model("preact_resnet18", rdata.info, seed=args.seed)
        ratio_case("preact_resnet18", "random 3x32x32", rmodel, rdata, device, resnet_args, notes)
    print()
    print(
        f"digits model: {what}; ResNet: random weights. Equal numbers, first batch, same weights:"
    )
    print("\n".join(notes))
    print()
    if not args.skip_cpu_memory:
        cpu_memory(args)
        print()
    if cuda:
        full_run(args, torch.device("cuda"))
        for ahead in args.cuda_ahead or []:
            cuda_ahead_round(args, torch.device("cuda"), ahead)
    else:
        print(
            "CUDA not available: the GPU full-run time, GPU peak memory and FLOP utilisation "
            "were skipped"
        )


if __name__ == "__main__":
    main()
