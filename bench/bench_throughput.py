"""Training throughput (images/s) of the small CNN and PreAct-ResNet18 on 32x32 inputs.

Each row is ``sau_core.train.train``'s own figure (``TrainResult.images_per_s``: SGD, cosine
schedule, on-device augmentation, bf16 autocast and channels-last on CUDA, exactly as an
attack's training runs), after a separate warm-up call on the same model that is not counted.
Cases: the small CNN on real digits upsampled to 32x32 (1 channel, no augmentation), the small
CNN and PreAct-ResNet18 on random 32x32x3 tensors (CIFAR-shaped, crop+flip augmentation).
Devices: the CPU, and CUDA when available (``--devices`` to choose). Prints figures only;
nothing is asserted. Usage:

    bash .ci/venv python bench/bench_throughput.py              # full measurement
    bash .ci/venv python bench/bench_throughput.py --quick      # smoke run (seconds)
    bash .ci/venv python bench/bench_throughput.py --devices cuda --batch 256 --steps 100
"""

from __future__ import annotations

import torch

from bench.common import parser
from sau_core.data import DatasetInfo, ImageData, load_digits
from sau_core.device import describe, pick_device
from sau_core.models import create_model
from sau_core.train import TrainConfig, train

# (model, input label, source): "digits" is the embedded set at 32x32, "random" CIFAR-shaped noise
CASES = (
    ("small_cnn", "digits 1x32x32", "digits"),
    ("small_cnn", "random 3x32x32", "random"),
    ("preact_resnet18", "random 3x32x32", "random"),
)

# Timed steps per case when --steps is not given: PreAct-ResNet18 costs ~3.3 GFLOP per training
# image (0.56 GMAC forward, about 3x that with the backward), so a few steps of 128 images are
# already many seconds on a small CPU.
DEFAULT_STEPS = {("small_cnn", "cpu"): 40, ("preact_resnet18", "cpu"): 6}
DEFAULT_STEPS_CUDA = 100


def random_data(n: int, seed: int) -> ImageData:
    """``n`` uniform-noise 3x32x32 images with 10 random labels, CIFAR-10's geometry."""
    info = DatasetInfo(
        name="random",
        num_classes=10,
        shape=(3, 32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.29, 0.29, 0.29),
        natural=True,  # crop + flip augmentation, as CIFAR-10 trains
    )
    g = torch.Generator().manual_seed(seed)
    return ImageData(
        torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g), info
    )


def digits_data(n: int, seed: int) -> ImageData:
    """``n`` real digits training images at 32x32 (sampled with repetition when n > 1,347)."""
    train_set = load_digits(resolution=32, seed=seed).train
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train_set), generator=g)
    if n > len(idx):
        idx = idx[torch.randint(0, len(idx), (n,), generator=g)]
    return train_set.subset(idx[:n])


def measure(
    arch: str, source: str, device: torch.device, batch: int, steps: int, warmup: int, seed: int
) -> float:
    """Images/s of ``train`` over ``steps`` batches, after ``warmup`` uncounted batches."""
    n = batch * max(steps, warmup)
    data = digits_data(n, seed) if source == "digits" else random_data(n, seed)
    model = create_model(arch, data.info, seed=seed)

    def run(k: int) -> float:
        cfg = TrainConfig(epochs=1, batch_size=batch, seed=seed, eval_every=0)
        # train()'s own clock: from its first batch to the end of the epoch, which syncs (the
        # epoch's loss goes to the host), so data transfer and optimiser set-up are not counted.
        return train(model, data.subset(torch.arange(k * batch)), cfg, device=device).images_per_s

    if warmup:
        run(warmup)
    return run(steps)


def main() -> None:
    ap = parser(__doc__, epilog=True)
    ap.add_argument(
        "--devices",
        nargs="+",
        default=None,
        help="devices to measure (default: cpu, and cuda when available)",
    )
    ap.add_argument("--batch", type=int, default=128, help="images per training step")
    ap.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps per case (default: 40 small CNN / 6 ResNet on CPU, 100 on CUDA)",
    )
    ap.add_argument("--warmup", type=int, default=2, help="uncounted warm-up steps per case")
    ap.add_argument("--models", nargs="+", default=None, help="restrict to these models")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the CPU")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: batch 16, 2 timed steps, 1 warm-up step"
    )
    args = ap.parse_args()
    if args.quick:
        args.batch, args.steps, args.warmup = 16, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    devices = [pick_device(d) for d in names]

    print(
        f"torch {torch.__version__}; "
        + "; ".join(describe(d) for d in devices)
        + ("" if torch.cuda.is_available() else "; CUDA not available: GPU rows skipped")
        + (" [--quick: smoke figures only]" if args.quick else "")
    )
    print(
        "train(): SGD, cosine, on-device augmentation; CUDA rows use bf16 autocast + channels-last"
    )
    print()
    print("| model | input | device | batch | img/s | threads |")
    print("| --- | --- | --- | --- | --- | --- |")
    for device in devices:
        for arch, label, source in CASES:
            if args.models and arch not in args.models:
                continue
            steps = args.steps or (
                DEFAULT_STEPS_CUDA if device.type == "cuda" else DEFAULT_STEPS[(arch, "cpu")]
            )
            ips = measure(arch, source, device, args.batch, steps, args.warmup, args.seed)
            dev = describe(device) if device.type == "cuda" else "cpu"
            dev += " bf16+CL" if device.type == "cuda" else " fp32"
            print(
                f"| {arch} | {label} | {dev} | {args.batch} | {ips:,.0f} | "
                f"{torch.get_num_threads()} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
