"""Hostile and broken inputs, made by code (nothing binary is committed).

Each maker returns the bytes of one file. ``tests/test_hostile.py`` feeds them to the loaders and
``bench/bench_fuzz.py`` mutates the valid ones. Pickles that carry code use :class:`Payload`,
whose ``__reduce__`` would create a marker file: a loader that runs it leaves the marker behind.
"""

from __future__ import annotations

import io
import json
import pickle
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from sau_core.data import DatasetInfo
from sau_core.models import create_model

__all__ = [
    "INFO",
    "Payload",
    "jpeg_bytes",
    "png_bytes",
    "png_chunks",
    "safetensors_bytes",
    "sidecar_dict",
    "small_state",
    "zip_slip_bytes",
]

# The geometry every corpus checkpoint claims: digits at 8x8, as ``load_digits(resolution=8)``.
INFO = DatasetInfo(
    "digits",
    10,
    (1, 8, 8),
    (0.3,),
    (0.37,),
    natural=False,
    class_names=tuple(str(i) for i in range(10)),
    params={"resolution": 8},
)


class Payload:
    """Unpickling this object calls ``open(marker, "w")``: it creates the marker file."""

    def __init__(self, marker: str | Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def payload_pickle(marker: str | Path, protocol: int = 2) -> bytes:
    """A plain pickle whose loading creates ``marker`` (as a CIFAR batch file would be read)."""
    return pickle.dumps({"data": Payload(marker), "labels": [0]}, protocol=protocol)


def eval_pickle(code: str) -> bytes:
    """A hand-written pickle that calls ``builtins.eval(code)``."""
    text = code.encode()
    return (
        b"\x80\x02cbuiltins\neval\nX"
        + struct.pack("<I", len(text))
        + text
        + b"\x85R."  # TUPLE1, REDUCE, STOP
    )


def torch_payload(marker: str | Path) -> bytes:
    """``torch.save`` of a state dict with a code-carrying object in it (.pt zip format)."""
    buf = io.BytesIO()
    torch.save({"net.weight": torch.zeros(1), "x": Payload(marker)}, buf)
    return buf.getvalue()


# ------------------------------------------------------------------------------- checkpoints
def small_state(arch: str = "small_cnn", info: DatasetInfo = INFO) -> dict[str, torch.Tensor]:
    model = create_model(arch, info, seed=0)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def safetensors_bytes(state: dict[str, torch.Tensor] | None = None) -> bytes:
    from safetensors.torch import save

    return save(small_state() if state is None else state)


def safetensors_raw(header: dict | bytes, data: bytes = b"", declared: int | None = None) -> bytes:
    """A safetensors file from a raw header (dict or bytes) and data, with any declared length."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(head) if declared is None else declared
    return struct.pack("<Q", n) + head + data


def sidecar_dict(**changes) -> dict:
    side = {"format": "sau-lab-checkpoint/1", "arch": "small_cnn", "dataset": INFO.to_dict()}
    for key, value in changes.items():
        if key.startswith("dataset_") and isinstance(side["dataset"], dict):
            side["dataset"] = {**side["dataset"], key[len("dataset_") :]: value}
        else:
            side[key] = value
    return side


def zip_slip_bytes() -> bytes:
    """A zip (the container of ``torch.save``'s format) whose names try to leave any folder."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
        zf.writestr("../../escaped.txt", b"zip slip")
        zf.writestr("/tmp/sau-absolute-escape.txt", b"absolute")
        link = zipfile.ZipInfo("archive/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    return buf.getvalue()


# ------------------------------------------------------------------------------------ images
def png_chunks(width: int, height: int, idat: bytes, color_type: int = 0) -> bytes:
    """A PNG from its parts: any declared size, any (compressed) pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def zero_rows(width: int, height: int) -> bytes:
    """The zlib stream of a grey image of zeros (filter byte + row), compressed as it is made."""
    z = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    out = [z.compress(row) for _ in range(height)]
    return b"".join(out) + z.flush()


def png_bytes(size: int = 16, seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(size: int = 64, seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def jpeg_declared(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    raw = bytearray(jpeg_bytes(16))
    i = raw.find(b"\xff\xc0")
    struct.pack_into(">HH", raw, i + 5, height, width)
    return bytes(raw)


# -------------------------------------------------------------------------------- mutations
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0xFFFFFFFF, 2**31 - 1, 2**63 - 1, 2**64 - 1)


def mutate(raw: bytes, rng: np.random.Generator) -> bytes:
    """One to four random edits of ``raw``: flips, overwrites, cuts, inserts, splices, numbers."""
    b = bytearray(raw)
    for _ in range(int(rng.integers(1, 5))):
        op = int(rng.integers(0, 7))
        at = int(rng.integers(0, max(1, len(b))))
        if op == 0 and b:  # flip one bit
            b[at] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and b:  # overwrite a run of bytes
            n = int(rng.integers(1, 16))
            b[at : at + n] = rng.bytes(n)
        elif op == 2:  # truncate
            del b[at:]
        elif op == 3:  # insert random bytes
            b[at:at] = rng.bytes(int(rng.integers(1, 64)))
        elif op == 4 and b:  # duplicate a slice elsewhere
            n = int(rng.integers(1, 256))
            b[int(rng.integers(0, len(b) + 1)) : 0] = b[at : at + n]
        elif op == 5:  # an interesting little-endian number (e.g. the header length)
            value = INTERESTING[int(rng.integers(0, len(INTERESTING)))]
            b[at : at + 8] = value.to_bytes(8, "little")
        elif op == 6 and b:  # delete a slice
            del b[at : at + int(rng.integers(1, 64))]
    return bytes(b)
