"""Models uploaded through the dashboard: a checkpoint made elsewhere checked, measured and
written as an import run (:func:`import_checkpoint`)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..attacks import AttackSpec, path_params
from ..data import DataSpec, Split
from ..io.checkpoint import MAX_BYTES, WEIGHTS, CheckpointError, Sidecar, load_checkpoint
from ..metrics import evaluate
from ..models import MODELS
from ..pipeline import backdoor_for, write_import_outputs
from .runs import Run, RunStore
from .work import _now


# ----------------------------------------------------------------------------- uploaded models
def _server_path(attack: str, key: str, value: Any) -> bool:
    """A trigger parameter that names a file (``path_params``: Blended's key image, a custom
    trigger's image or mask given by path) rather than carrying the picture (a ``data:`` URI)."""
    try:
        paths = path_params(attack)
    except ValueError:  # an unknown attack: validation names it later
        return False
    return key in paths and isinstance(value, str) and bool(value) and not value.startswith("data:")


def import_checkpoint(
    store: RunStore,
    weights: bytes,
    filename: str,
    *,
    sidecar: bytes | None = None,
    arch: str | None = None,
    data: DataSpec | None = None,
    attack: AttackSpec | None = None,
    label: str = "",
    split: Split | None = None,
    owner: str = "",
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Run:
    """Check an uploaded model and keep it as a finished ``import`` run (a checkpoint directory).

    Args:
        weights: the file's bytes: safetensors, or a plain PyTorch state dict (``.pt``/``.pth``,
            read with ``weights_only=True``; never unpickled otherwise).
        filename: its name (only the extension is used).
        sidecar: an optional SAU Lab ``checkpoint.json``; it names the architecture, data set
            and attack. Its data root and any trigger file path are not used (they name server
            files); a trigger picture carried as a ``data:`` URI is.
        arch, data: the architecture and data set when there is no sidecar (they win over it).
        attack: the trigger when known (ASR/RA are measured with it), else the sidecar's or none.
        owner: the session uploading it (see :meth:`RunStore.create`).
        mean, std: the input normalisation of a bare network's weights (default: the data
            set's); refused for weights that carry their own.

    The model is evaluated on the data set's test set; ``metrics.json`` holds ACC (and ASR/RA).
    Raises ValueError (CheckpointError is one) with a clear message for anything that does not fit.
    """
    suffix = Path(str(filename)).suffix.lower()
    if suffix not in (".safetensors", ".pt", ".pth"):
        raise ValueError(f"upload a .safetensors, .pt or .pth file, not {suffix or 'a file without extension'}")  # fmt: skip
    if len(weights) > MAX_BYTES:
        raise ValueError(f"the weights file is {len(weights) >> 20} MiB, over the 1 GiB limit")
    side = None if sidecar is None else Sidecar.parse(sidecar, "checkpoint.json")
    try:
        if data is None:
            named = None if side is None else side.data_spec()
            if named is None:
                raise ValueError("name the data set the model was trained on")
            data = DataSpec(named.name, None, named.kwargs)  # never the sidecar's folder
        if attack is None and side is not None:
            attack = side.attack_spec()
    except (TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"checkpoint.json has a malformed data or attack block: {err}") from None
    arch = arch or (None if side is None else side.arch)
    if not arch:
        raise ValueError("name the model's architecture")
    if arch not in MODELS:
        raise ValueError(f"unknown model {arch!r}; choose from {', '.join(MODELS)}")
    if attack is not None:  # a file path names a server file: never read it for an upload
        attack = replace(attack, params={k: v for k, v in attack.params.items()
                                         if not _server_path(attack.name, k, v)})  # fmt: skip
    split = split if split is not None else data.load()
    if attack is not None:
        attack.validate(split.info)

    shown = Path(str(filename)).name[:200]
    with tempfile.TemporaryDirectory(prefix="sau-upload-") as tmp:
        path = Path(tmp) / (WEIGHTS if suffix == ".safetensors" else f"weights{suffix}")
        path.write_bytes(weights)
        try:
            # No sidecar in tmp: the architecture and the data set's geometry come from us.
            ckpt = load_checkpoint(path, arch=arch, info=split.info, name=shown, mean=mean,
                                   std=std)  # fmt: skip
        except CheckpointError as err:
            raise ValueError(str(err)) from None
        ev = evaluate(ckpt.model, split.test.x, split.test.y, backdoor_for(split, attack),
                      num_classes=split.info.num_classes, confusion=False)  # fmt: skip
        run = store.create("import", {"kind": "import", "file": Path(filename).name[:200],
                                      "arch": arch, "data": data.to_dict(),
                                      "attack": None if attack is None else attack.to_dict()},
                           label or f"uploaded {Path(filename).name[:80]}", owner)  # fmt: skip
        try:
            write_import_outputs(run.path, ckpt.model, data, attack, ev, shown)
            run.update_status(state="finished", started=_now(), ended=_now())
        except BaseException:
            shutil.rmtree(run.path, ignore_errors=True)
            raise
    return run
