"""Ready-made backdoored checkpoints: make them, list them, check them before use.

``assets/make_checkpoints.py`` trains one small backdoored model per attack with the embedded
demo preset (:data:`sau_core.lab.presets.DEMO`, on each attack's model:
:func:`sau_core.lab.presets.attack_setup`) and writes, under ``assets/checkpoints/``::

    manifest.json           {"format", "preset", "checkpoints": [{name, attack, path, metrics, sha256}]}
    badnets/model.safetensors  badnets/checkpoint.json  badnets/metrics.json   (and so on)

The dashboard lists them (:func:`list_ready`) and checks each file's SHA-256 against the
manifest (:func:`verify`) before loading, so a swapped or damaged file is refused, not used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .._assets import asset_dir
from ..attacks import AttackSpec
from ..events import Callback
from ..io.atomic import write_json_atomic
from ..io.checkpoint import SIDECAR, WEIGHTS
from ..pipeline import plant_backdoor, write_attack_outputs
from .presets import DEMO, DemoPreset, attack_setup

__all__ = ["DEFAULT_DIR", "ReadyMade", "default_dir", "list_ready", "make_ready", "verify"]

DEFAULT_DIR = asset_dir() / "checkpoints"
DIR_ENV = "SAU_LAB_CHECKPOINTS"
MANIFEST = "manifest.json"
FORMAT = "sau-lab-ready/1"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
HASHED = (WEIGHTS, SIDECAR)


def default_dir() -> Path:
    """``$SAU_LAB_CHECKPOINTS`` when set, else the shipped ``assets/checkpoints``."""
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


@dataclass(frozen=True)
class ReadyMade:
    name: str  # e.g. "badnets"
    title: str  # e.g. "digits 16x16, BadNets, wide_cnn"
    path: Path  # the checkpoint directory
    attack: dict  # AttackSpec.to_dict()
    data: dict  # DataSpec.to_dict()
    arch: str
    metrics: dict  # acc, asr, ra, per_class_asr at making time
    sha256: dict  # file name -> hex digest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(entry: ReadyMade) -> None:
    """ValueError unless every hashed file is present and matches the manifest."""
    for name in HASHED:
        path = entry.path / name
        if not path.is_file():
            raise ValueError(f"ready-made checkpoint {entry.name!r} lacks {name}")
        want = entry.sha256.get(name)
        if not want or _sha256(path) != want:
            raise ValueError(
                f"ready-made checkpoint {entry.name!r}: {name} does not match its SHA-256 in "
                f"{MANIFEST} (damaged or replaced); make them again with assets/make_checkpoints.py"
            )


def list_ready(folder: str | Path | None = None) -> tuple[list[ReadyMade], str]:
    """The manifest's entries (not yet verified) and a note: empty, or why there are none."""
    folder = Path(default_dir() if folder is None else folder)
    path = folder / MANIFEST
    if not path.is_file():
        return [], (
            f"no ready-made checkpoints in {folder}: make them with "
            "`bash .ci/venv python assets/make_checkpoints.py`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        entries = []
        for e in manifest["checkpoints"]:
            name = str(e["name"])
            if not _NAME.match(name):
                raise ValueError(f"bad checkpoint name {name!r}")
            entries.append(
                ReadyMade(
                    name=name,
                    title=str(e.get("title", name)),
                    path=folder / name,  # never a path from the file: the name is checked
                    attack=dict(e["attack"]),
                    data=dict(e["data"]),
                    arch=str(e["arch"]),
                    metrics=dict(e.get("metrics", {})),
                    sha256={str(k): str(v) for k, v in dict(e["sha256"]).items()},
                )
            )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:  # fmt: skip
        return [], f"{path} is unreadable ({type(err).__name__}: {err})"
    return entries, ""


ATTACK_TITLES = {"badnets": "BadNets", "blended": "Blended", "sig": "SIG", "wanet": "WaNet",
                 "lc": "LC", "lf": "LF", "ssba": "SSBA", "inputaware": "Input-aware"}  # fmt: skip
# every attack but custom
READY_ATTACKS = ("badnets", "blended", "sig", "wanet", "lc", "lf", "ssba", "inputaware")


def make_ready(
    out: str | Path,
    attacks: list[str] | tuple[str, ...] = READY_ATTACKS,
    preset: DemoPreset = DEMO,
    *,
    device: str | None = None,
    callback: Callback | None = None,
) -> dict:
    """Train one backdoored model per attack with ``preset`` and write them and the manifest.

    Every attack uses the preset's data, training settings, target, poison ratio and seed, and
    the preset's model unless the attack has its own (:func:`sau_core.lab.presets.attack_setup`);
    the attack's parameters are its defaults. Entries of other attacks already in ``out``'s
    manifest for the same preset are kept, so one attack can be (re)made alone. Returns the
    manifest.
    """
    out = Path(out)
    split = preset.data.load()
    res = split.info.shape[1]
    entries = []
    for name in attacks:
        setup = attack_setup(name, preset)
        spec = AttackSpec.from_dict(setup.attack.to_dict())
        run = plant_backdoor(split, spec, setup.arch, setup.train, device=device, callback=callback)
        folder = out / name
        metrics = write_attack_outputs(folder, run, setup.data, setup.train)
        entries.append(
            {
                "name": name,
                "title": f"{setup.data.name} {res}x{res}, {ATTACK_TITLES.get(name, name)}, "
                f"{setup.arch}",
                "attack": run.spec.to_dict(),  # as planted (LF: with its pattern)
                "data": setup.data.to_dict(),
                "arch": setup.arch,
                "metrics": {k: metrics[k] for k in ("acc", "asr", "ra", "per_class_asr")}
                | {"train_seconds": metrics["train_seconds"]},
                "sha256": {f: _sha256(folder / f) for f in HASHED},
            }
        )
    preset_block = {
        "data": preset.data.to_dict(),
        "arch": preset.arch,
        "train": preset.train.to_dict(),
        "target": preset.attack.target,
        "poison_ratio": preset.attack.poison_ratio,
        "seed": preset.attack.seed,
    }
    made = {e["name"] for e in entries}
    try:
        old = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    if isinstance(old, dict) and old.get("preset") == preset_block:
        kept = [e for e in old.get("checkpoints", []) if e.get("name") not in made]
        order = {n: i for i, n in enumerate(READY_ATTACKS)}
        entries = sorted(kept + entries, key=lambda e: order.get(e.get("name"), len(order)))
    manifest = {"format": FORMAT, "preset": preset_block, "checkpoints": entries}
    write_json_atomic(out / MANIFEST, manifest)
    return manifest
