"""Checkpoints: weights as safetensors plus a JSON sidecar; never unpickled.

A checkpoint is a directory holding ``model.safetensors`` and ``checkpoint.json`` (data set
geometry, architecture, attack spec, seed, metrics, library versions). ``load_checkpoint`` also
takes the ``.safetensors`` file itself (the sidecar is looked up beside it), or a bare PyTorch
state dict (``.pt``/``.pth``, read with ``weights_only=True``) when the caller names the
architecture and the data set. Files are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from . import __version__
from .data import DatasetInfo
from .models import Classifier, create_model

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "write_json_atomic",
]

FORMAT = "sau-lab-checkpoint/1"
WEIGHTS = "model.safetensors"
SIDECAR = "checkpoint.json"
MAX_BYTES = 1 << 30  # 1 GiB: larger files are refused before reading


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model it claims to be."""


@dataclass
class Checkpoint:
    model: Classifier
    meta: dict  # the sidecar's contents
    path: Path

    @property
    def info(self) -> DatasetInfo:
        return self.model.info


def versions() -> dict:
    import torchvision

    return {
        "sau_lab": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj) -> None:
    write_bytes_atomic(Path(path), (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def save_checkpoint(directory: str | Path, model: Classifier, meta: dict | None = None) -> Path:
    """Write ``model`` and its sidecar into ``directory`` (created); returns the directory.

    ``meta`` may carry ``attack`` (an AttackSpec dict), ``seed``, ``metrics``, ``train`` and any
    JSON-able extras; the architecture, data set geometry and versions are added here.
    """
    from safetensors.torch import save

    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    sidecar = {
        "format": FORMAT,
        "arch": model.arch,
        "dataset": model.info.to_dict(),
        **(meta or {}),
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_bytes_atomic(directory / WEIGHTS, save(state, metadata={"format": FORMAT}))
    write_json_atomic(directory / SIDECAR, sidecar)
    return directory


def _read_state(path: Path) -> dict[str, Tensor]:
    if path.stat().st_size > MAX_BYTES:
        raise CheckpointError(
            f"{path.name} is {path.stat().st_size >> 20} MiB, over the 1 GiB limit"
        )
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            return load(path.read_bytes())
        except (SafetensorError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{path.name} is not a valid safetensors file: {err}") from None
    if path.suffix in (".pt", ".pth", ".bin"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # weights_only refuses code; report it, never fall back
            raise CheckpointError(
                f"{path.name} could not be read as a plain state dict (weights_only=True): "
                f"{str(err).splitlines()[0]}"
            ) from None
        if (
            isinstance(state, dict)
            and "state_dict" in state
            and isinstance(state["state_dict"], dict)
        ):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise CheckpointError(f"{path.name} does not hold a state dict of tensors")
        return state
    raise CheckpointError(
        f"unsupported checkpoint file {path.name!r}: give a directory, a .safetensors file, "
        "or a .pt/.pth state dict"
    )


def _read_sidecar(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or "arch" not in meta or "dataset" not in meta:
        raise CheckpointError(
            f"{path} lacks the 'arch' and 'dataset' fields of a SAU Lab checkpoint"
        )
    return meta


def load_state_into(model: nn.Module, state: dict[str, Tensor], source: str = "checkpoint") -> None:
    """``load_state_dict`` with a clear error naming missing, unexpected and mis-shaped tensors."""
    own = model.state_dict()
    # Tolerate a state dict saved from the bare network (without the normalisation wrapper).
    if not any(k.startswith("net.") for k in state) and any(k.startswith("net.") for k in own):
        state = {**{k: v for k, v in own.items() if k.startswith("normalize.")},
                 **{f"net.{k}": v for k, v in state.items()}}  # fmt: skip
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: {tuple(state[k].shape)} vs expected {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} tensors have the wrong shape (e.g. {'; '.join(wrong[:3])})")
        if missing:
            parts.append(f"{len(missing)} tensors are missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} are unexpected (e.g. {', '.join(unexpected[:3])})")
        arch = getattr(model, "arch", type(model).__name__)
        raise CheckpointError(
            f"{source} does not match architecture {arch!r} for this data set: " + "; ".join(parts)
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def load_checkpoint(
    path: str | Path,
    *,
    arch: str | None = None,
    info: DatasetInfo | None = None,
    device: str | torch.device = "cpu",
) -> Checkpoint:
    """Read a checkpoint directory or weights file into a fresh model (in eval mode).

    Args:
        path: a checkpoint directory, its ``model.safetensors``, or a ``.pt``/``.pth`` state dict.
        arch, info: the architecture and data set; needed only when there is no sidecar, and
            checked against it when there is one.
        device: where to put the model.

    Raises:
        CheckpointError: missing or unreadable files, an unknown architecture, or tensors that do
            not fit it.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    if path.is_dir():
        weights, sidecar = path / WEIGHTS, path / SIDECAR
        if not weights.is_file():
            raise CheckpointError(f"{path} has no {WEIGHTS}")
    else:
        weights, sidecar = path, path.with_name(SIDECAR)
    meta = _read_sidecar(sidecar) if sidecar.is_file() else {}
    if meta:
        if arch is not None and arch != meta["arch"]:
            raise CheckpointError(f"checkpoint is a {meta['arch']!r}, not a {arch!r}")
        try:
            saved_info = DatasetInfo.from_dict(meta["dataset"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"{sidecar.name} has a malformed 'dataset' block: {err}"
            ) from None
        info = info or saved_info
        arch = meta["arch"]
    elif arch is None or info is None:
        raise CheckpointError(
            f"{weights.name} has no {SIDECAR} beside it: name the architecture and data set"
        )
    try:
        model = create_model(arch, info)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    load_state_into(model, _read_state(weights), source=weights.name)
    model.to(device).eval()
    meta = meta or {"format": FORMAT, "arch": arch, "dataset": info.to_dict()}
    return Checkpoint(model, meta, path)
