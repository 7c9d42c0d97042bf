"""Hostile uploads: what each costs the server in memory, and the message it gets.

Each case is a file a student (or an attacker) could upload on *Set up*. Each is handed to
``sau_core.serving.import_checkpoint`` (what the upload form calls) in a fresh child process that
reports its peak resident memory (``VmHWM``) above its resident set just before the call, and
the one-line message (or "accepted"). Nothing is asserted.

Usage:

    bash .ci/venv python bench/bench_uploads.py
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from bench.common import machine_line, parser

DATA8 = {"name": "digits", "root": None, "kwargs": {"resolution": 8, "seed": 0}}


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("echo PWNED > /tmp/sau-upload-pwned",))


def make_cases(work: Path) -> list[tuple[str, Path, dict]]:
    """(name, weights file, import arguments) of every case; the files are written to ``work``."""
    import torch

    from sau_core.data import DatasetInfo
    from sau_core.models import create_model

    info = DatasetInfo("digits", 10, (1, 8, 8), (0.5,), (0.5,), params={"resolution": 8})
    model = create_model("small_cnn", info, seed=0)
    cases = []

    good = work / "good.pt"
    torch.save(model.state_dict(), good)
    cases.append(("a real small CNN (.pt)", good, {}))

    bomb = work / "bomb.pt"  # torch.save's zip layout, one storage member of 1.5 GiB of zeros
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item.filename))
        with dst.open("bomb/data/999", "w", force_zip64=True) as f:
            chunk = bytes(64 << 20)
            for _ in range(24):  # 24 x 64 MiB = 1.5 GiB, deflated to about 1.5 MB
                f.write(chunk)
    cases.append(("deflated zip of 1.5 GiB zeros (.pt)", bomb, {}))

    huge = work / "huge.pt"
    state = model.state_dict()
    state["net.features.0.weight"] = torch.full_like(state["net.features.0.weight"], 3e38)
    torch.save(state, huge)
    cases.append(("finite weights of 3e38 (outputs overflow)", huge, {}))

    nan = work / "nan.pt"
    state = model.state_dict()
    state["net.features.0.weight"][0] = float("nan")
    torch.save(state, nan)
    cases.append(("a NaN weight", nan, {}))

    code = work / "code.pt"
    code.write_bytes(pickle.dumps({"w": _Payload()}))
    cases.append(("a pickle that runs a command (.pt)", code, {}))

    header = work / "header.safetensors"
    header.write_bytes((1 << 40).to_bytes(8, "little") + b"{}")
    cases.append(("safetensors declaring a 1 TiB header", header, {}))

    for name, data in [
        ("sidecar asking to download CIFAR-10", {"name": "cifar10", "kwargs": {"download": True}}),
        ("sidecar naming /etc as an option", {"name": "digits", "kwargs": {"root": "/etc"}}),
        ("sidecar with a data root of /etc", {**DATA8, "root": "/etc"}),
    ]:
        side = work / f"{len(cases)}.json"
        side.write_text(json.dumps({"arch": "small_cnn", "data": data}))
        cases.append((name, good, {"sidecar": str(side)}))
    cases.append(("wrong architecture (wide_cnn)", good, {"arch": "wide_cnn"}))
    return cases


def child(path: str, options: str) -> None:
    """In a fresh process: import one file; print a JSON line with the memory and message."""
    import tempfile as tf

    from bench.bench_sau_speed import rss_kib
    from sau_core.data import DataSpec
    from sau_core.serving import import_checkpoint
    from sau_core.serving.runs import RunStore

    opts = json.loads(options)
    data = DataSpec.from_dict(DATA8)
    split = data.load()
    raw = Path(path).read_bytes()
    sidecar = Path(opts["sidecar"]).read_bytes() if "sidecar" in opts else None
    kwargs = {} if sidecar else {"arch": opts.get("arch", "small_cnn"), "data": data}
    before = rss_kib("VmRSS")
    try:
        import_checkpoint(RunStore(tf.mkdtemp()), raw, Path(path).name, sidecar=sidecar,
                          split=None if sidecar else split, **kwargs)  # fmt: skip
        message = "accepted"
    except ValueError as err:
        message = " ".join(str(err).split())
    peak = rss_kib("VmHWM")
    print(json.dumps({"peak_above_mib": (peak - before) / 1024, "message": message}))


def main() -> None:
    ap = parser(__doc__, epilog=True)
    ap.add_argument("--child", nargs=2, help="(internal) one case in this process")
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    print(machine_line())
    work = Path(tempfile.mkdtemp(prefix="sau-uploads-"))
    print("| upload | file size | server memory above its resident set, peak | what it was told |")
    print("| --- | --- | --- | --- |")
    for name, path, options in make_cases(work):
        out = subprocess.run([sys.executable, __file__, "--child", str(path), json.dumps(options)],
                             capture_output=True, text=True, check=False)  # fmt: skip
        lines = out.stdout.strip().splitlines()
        if out.returncode != 0 or not lines:
            print(f"| {name} | - | - | the child failed: {out.stderr.strip()[-300:]} |")
            continue
        got = json.loads(lines[-1])
        size = path.stat().st_size
        shown = f"{size / 1024:.0f} KiB" if size < 1 << 20 else f"{size / 2**20:.1f} MiB"
        print(f"| {name} | {shown} | {got['peak_above_mib']:.0f} MiB | {got['message'][:160]} |")
    pwned = Path("/tmp/sau-upload-pwned").exists()
    print(f"\nthe pickle's command ran: {'YES' if pwned else 'no'}")


if __name__ == "__main__":
    main()
