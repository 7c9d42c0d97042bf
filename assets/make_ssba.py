"""Train SAU Lab's SSBA encoder and decoder and write them under ``assets/ssba/``.

SSBA (Li et al., ICCV 2021) hides a code in each image with StegaStamp, a pretrained encoder that
cannot be downloaded here, so SAU Lab trains its own small one (``sau_core.attacks.ssba``).
Training images: scikit-learn's digits (training split) at 8x8, 16x16 and 32x32, grey as the
data set is (the residual is the encoder's channel mean, as the trigger applies it), and smooth
random colour images of the same sizes (so RGB data sets get a working encoder too). The loss:
the decoder must read a random 16-bit code back from ``clip(x + eps * encoder(x, code))`` (binary
cross entropy), and, ramped in after a quarter of the steps as StegaStamp ramps its image losses,
the residual is penalised more where the image is flat than where it has strokes or texture
(weight ``1 / (local standard deviation + 0.1)``), which makes it depend on the image. Seeded;
writes the weights (safetensors) and ``manifest.json`` with their SHA-256, the settings, the
training time and the measured bit accuracy on the digits test split. Usage::

    .venv/bin/python assets/make_ssba.py [--steps 5000] [--out assets/ssba]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from sau_core.attacks.lf import low_pass
from sau_core.attacks.ssba import (
    DECODER,
    ENCODER,
    MANIFEST,
    StegaDecoder,
    StegaEncoder,
    decode,
    encode,
)
from sau_core.data import load_digits, resize
from sau_core.io.atomic import write_bytes_atomic, write_json_atomic

BITS, WIDTH, EPS, SIDES, BATCH = 16, 32, 0.05, (8, 16, 32), 64


def _pools(seed: int) -> list[torch.Tensor]:
    """Training images per side and kind: digits (grey, 1 channel) and smooth colour noise."""
    g = torch.Generator().manual_seed(seed)
    digits = load_digits(resolution=8, seed=0).train.x  # (N, 1, 8, 8)
    pools = []
    for side in SIDES:
        pools.append(resize(digits, side).contiguous())
        noise = low_pass(torch.rand(len(digits), 3, side, side, generator=g), 0.3)
        lo, hi = noise.amin((1, 2, 3), keepdim=True), noise.amax((1, 2, 3), keepdim=True)
        pools.append(((noise - lo) / (hi - lo + 1e-6)).clamp(0, 1))
    return pools


def _flatness(x: torch.Tensor) -> torch.Tensor:
    """1 / (local standard deviation over 3x3 + 0.1): large where the image is flat."""
    mean = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    var = F.avg_pool2d(x * x, 3, 1, 1, count_include_pad=False) - mean**2
    return 1.0 / (var.clamp_min(0).sqrt() + 0.1)


def measure(enc, dec, x: torch.Tensor, seed: int = 123) -> dict:
    """Bit accuracy on ``x`` with random codes, the same on clean images (chance: 0.5), and how
    much the residual for one code differs between images (std across images / mean size)."""
    g = torch.Generator().manual_seed(seed)
    code = torch.randint(0, 2, (len(x), BITS), generator=g).float()
    one = code[:1].expand(len(x), -1)
    with torch.no_grad():
        bits = decode(dec, (x + EPS * encode(enc, x, code)).clamp(0, 1)) > 0
        plain = decode(dec, x) > 0
        r = encode(enc, x, one)
    return {"bit_accuracy": round(float((bits.float() == code).float().mean()), 4),
            "bit_accuracy_clean": round(float((plain.float() == code).float().mean()), 4),
            "spread": round(float(r.std(0).mean() / r.abs().mean()), 3)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "ssba")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--visibility", type=float, default=0.01, help="weight of the residual loss")
    args = ap.parse_args(argv)
    if args.steps < 4:
        ap.error("--steps must be at least 4")
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    pools = _pools(args.seed)
    enc, dec = StegaEncoder(BITS, WIDTH), StegaDecoder(BITS, WIDTH)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        pool = pools[step % len(pools)]
        x = pool[torch.randint(len(pool), (BATCH,), generator=g)]
        code = torch.randint(0, 2, (BATCH, BITS), generator=g).float()
        r = EPS * encode(enc, x, code)
        loss_code = F.binary_cross_entropy_with_logits(decode(dec, (x + r).clamp(0, 1)), code)
        loss_vis = (r.pow(2) * _flatness(x)).mean() / EPS**2
        ramp = min(1.0, max(0.0, (step - args.steps / 4) / (args.steps / 4)))
        loss = loss_code + ramp * args.visibility * loss_vis
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == args.steps:
            print(f"step {step}: code loss {loss_code.item():.4f}, residual loss "
                  f"{loss_vis.item():.3f} ({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    seconds = round(time.perf_counter() - start, 1)
    enc.eval(), dec.eval()
    test = load_digits(resolution=8, seed=0).test.x
    measured = {f"digits {s}x{s}": measure(enc, dec, resize(test, s)) for s in SIDES}
    from safetensors.torch import save

    hashes = {}
    for name, module in ((ENCODER, enc), (DECODER, dec)):
        raw = save({k: v.contiguous() for k, v in module.state_dict().items()})
        write_bytes_atomic(args.out / name, raw)
        hashes[name] = hashlib.sha256(raw).hexdigest()
    write_json_atomic(args.out / MANIFEST, {
        "format": "sau-lab-ssba/1", "bits": BITS, "width": WIDTH, "eps": EPS,
        "steps": args.steps, "seed": args.seed, "visibility": args.visibility,
        "train_seconds": seconds, "threads": torch.get_num_threads(),
        "measured_on_digits_test": measured, "torch": torch.__version__, "sha256": hashes,
    })  # fmt: skip
    for k, v in measured.items():
        print(f"{k}: {v}")
    print(f"wrote {args.out / ENCODER}, {args.out / DECODER}, {args.out / MANIFEST} "
          f"({seconds} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
