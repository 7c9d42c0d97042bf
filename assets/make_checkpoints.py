"""Make the ready-made backdoored checkpoints the dashboard offers, under ``assets/checkpoints/``.

One small model per attack (BadNets, Blended, SIG, WaNet, LC, LF, Input-aware), trained with the embedded demo preset
(``sau_core.lab.presets.DEMO``: data, model, training settings, target, poison ratio and seed), plus
``manifest.json`` with each model's ACC/ASR/RA and the SHA-256 of its files. Usage::

    bash .ci/venv python assets/make_checkpoints.py                      # all seven, the preset
    bash .ci/venv python assets/make_checkpoints.py --attacks badnets    # just one
    bash .ci/venv python assets/make_checkpoints.py --epochs 1 --resolution 8 --out /tmp/ck
                                                                         # a tiny set for tests

``--epochs`` and ``--resolution`` override the preset (for tests); leave them out for the real
checkpoints, so the shipped ones always follow the preset.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from sau_core.data import DataSpec
from sau_core.lab.presets import DEMO
from sau_core.lab.ready import DEFAULT_DIR, READY_ATTACKS, make_ready


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_DIR, help=f"default: {DEFAULT_DIR}")
    ap.add_argument(
        "--attacks", nargs="+", default=list(READY_ATTACKS), choices=list(READY_ATTACKS)
    )
    ap.add_argument("--epochs", type=int, default=None, help="override the preset (tests only)")
    ap.add_argument(
        "--resolution", type=int, default=None, help="override the preset's digits size"
    )
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    preset = DEMO
    if args.epochs is not None:
        preset = replace(preset, train=replace(preset.train, epochs=args.epochs).validate())
    if args.resolution is not None:
        kwargs = {**preset.data.kwargs, "resolution": args.resolution}
        preset = replace(preset, data=DataSpec(preset.data.name, preset.data.root, kwargs))
    manifest = make_ready(args.out, args.attacks, preset, device=args.device)
    for e in manifest["checkpoints"]:
        m = e["metrics"]
        print(f"{e['name']:8s} ACC {m['acc']:.4f}  ASR {m['asr']:.4f}  RA {m['ra']:.4f}  "
              f"({m['train_seconds']:.1f} s)  -> {args.out / e['name']}")  # fmt: skip
    print(f"manifest: {args.out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
