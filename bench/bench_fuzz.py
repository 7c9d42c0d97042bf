"""A larger fuzz of the untrusted-file readers: seeded mutations, counted by outcome.

Targets: ``load_checkpoint`` on mutated safetensors weights (with the architecture named), on a
valid weights file with a mutated ``checkpoint.json``, and on mutated ``.pt`` state dicts
(``weights_only=True``); ``_read_image`` on mutated PNG and JPEG files. Each input is one to four
random edits (bit flips, overwrites, cuts, inserts, duplicated slices, "interesting" 64-bit
numbers such as a header length of 2**64-1) of a valid file (``tests/hostile_corpus.mutate``).
An outcome is *loaded* (the reader returned a model or an image), *refused* (the documented
error: CheckpointError, or ValueError for images) or *undocumented* (anything else: a bug).
Prints the counts and the first undocumented cases; exit status 1 when there is any. Usage:

    bash .ci/venv python bench/bench_fuzz.py                  # 5,000 inputs (about a minute)
    bash .ci/venv python bench/bench_fuzz.py --n 500 --seed 3

(atheris, a coverage-guided fuzzer, is not a dependency; this loop is seeded and reproducible.)
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sau_core.data.safe_io import _read_image  # noqa: E402
from sau_core.io.checkpoint import SIDECAR, WEIGHTS, CheckpointError, load_checkpoint  # noqa: E402
from tests.hostile_corpus import (  # noqa: E402
    INFO,
    jpeg_bytes,
    mutate,
    png_bytes,
    safetensors_bytes,
    sidecar_dict,
    small_state,
)


def _pt_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save(small_state(), buf)
    return buf.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="inputs in all (default 5000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    import json

    valid = {
        "safetensors": safetensors_bytes(),
        "sidecar": json.dumps(sidecar_dict()).encode(),
        "pt": _pt_bytes(),
        "png": png_bytes(16),
        "jpeg": jpeg_bytes(32),
    }
    tmp = Path(tempfile.mkdtemp(prefix="sau-fuzz-"))
    weights, sidecar, pt, img = tmp / WEIGHTS, tmp / SIDECAR, tmp / "w.pt", tmp / "x.img"

    def run(target: str, raw: bytes) -> str:
        sidecar.unlink(missing_ok=True)
        if target == "safetensors":
            weights.write_bytes(raw)
            load_checkpoint(weights, arch="small_cnn", info=INFO)
        elif target == "sidecar":
            weights.write_bytes(valid["safetensors"])
            sidecar.write_bytes(raw)
            load_checkpoint(tmp)
        elif target == "pt":
            pt.write_bytes(raw)
            load_checkpoint(pt, arch="small_cnn", info=INFO)
        else:
            img.write_bytes(raw)
            _read_image(img, 8, 3)
        return "loaded"

    rng = np.random.default_rng(args.seed)
    targets = list(valid)
    counts: dict[str, Counter] = {t: Counter() for t in targets}
    bad: list[str] = []
    t0 = time.perf_counter()
    for i in range(args.n):
        target = targets[i % len(targets)]
        raw = mutate(valid[target], rng)
        try:
            outcome = run(target, raw)
        except CheckpointError:
            outcome = "refused"
        except ValueError:
            outcome = "refused" if target in ("png", "jpeg") else "undocumented"
            if outcome == "undocumented":
                bad.append(f"{target} #{i}: {traceback.format_exc(limit=2)}")
        except Exception:  # the bug this bench looks for
            outcome = "undocumented"
            bad.append(f"{target} #{i}: {traceback.format_exc(limit=2)}")
        counts[target][outcome] += 1
    elapsed = time.perf_counter() - t0

    print(f"fuzzed {args.n} inputs in {elapsed:.1f} s (seed {args.seed})")
    print(f"{'target':<12} {'inputs':>7} {'loaded':>7} {'refused':>8} {'undocumented':>13}")
    for t in targets:
        c = counts[t]
        print(f"{t:<12} {sum(c.values()):>7} {c['loaded']:>7} {c['refused']:>8} {c['undocumented']:>13}")  # fmt: skip
    total = sum((counts[t] for t in targets), Counter())
    print(f"{'all':<12} {args.n:>7} {total['loaded']:>7} {total['refused']:>8} {total['undocumented']:>13}")  # fmt: skip
    for line in bad[:5]:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
