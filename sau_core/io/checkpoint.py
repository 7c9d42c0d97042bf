"""Checkpoints: weights as safetensors plus a JSON sidecar; never unpickled.

A checkpoint is a directory holding ``model.safetensors`` and ``checkpoint.json`` (data set
geometry, architecture, attack spec, seed, metrics, library versions). ``load_checkpoint`` also
takes the ``.safetensors`` file itself (the sidecar is looked up beside it), or a bare PyTorch
state dict (``.pt``/``.pth``, read with ``weights_only=True``) when the caller names the
architecture and the data set. Files are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import math
import platform
import time
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .. import __version__
from ..data import DatasetInfo, DataSpec, dataset_options
from ..lab.recipes import recipe
from ..models import Classifier, create_model
from .atomic import write_bytes_atomic, write_json_atomic

if TYPE_CHECKING:
    from ..attacks import AttackSpec
    from ..train import TrainConfig

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "check_info",
    "load_checkpoint",
    "Sidecar",
    "save_checkpoint",
    "sidecar_of",
    "write_json_atomic",
]

FORMAT = "sau-lab-checkpoint/1"
WEIGHTS = "model.safetensors"
SIDECAR = "checkpoint.json"
MAX_BYTES = 1 << 30  # 1 GiB: larger files are refused before reading
MAX_SIDECAR_BYTES = 1 << 20  # 1 MiB: a sidecar is a few hundred bytes of JSON
MAX_CLASSES = 10_000  # bounds on a sidecar's data set geometry (a model is built from it)
MAX_SIDE = 1024


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model it claims to be."""


@dataclass
class Checkpoint:
    model: Classifier
    sidecar: Sidecar  # the checked checkpoint.json (arch and geometry always set)
    path: Path
    # where the input normalisation (mean, std) came from: "weights" (normalize.* tensors) or
    # "data set" (bare network weights: the DatasetInfo's mean and std)
    normalization: str = "weights"

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


def _read_state(path: Path, name: str | None = None) -> dict[str, Tensor]:
    """The tensors of a weights file; ``name`` is how messages call it (default its own)."""
    shown = name or path.name
    if path.stat().st_size > MAX_BYTES:
        raise CheckpointError(f"{shown} is {path.stat().st_size >> 20} MiB, over the 1 GiB limit")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load

        raw = path.read_bytes()
        declared = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else -1
        if not 0 <= declared <= len(raw) - 8:
            raise CheckpointError(
                f"{shown} is not a valid safetensors file: "
                + (
                    f"its header ({declared:,} bytes) does not fit in the file ({len(raw):,} bytes)"
                    if declared >= 0
                    else f"{len(raw)} bytes is too short for a header"
                )
            )
        try:
            return load(raw)
        except (SafetensorError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{shown} is not a valid safetensors file: {err}") from None
    if path.suffix in (".pt", ".pth", ".bin"):
        return _read_torch_state(path, name or path.name)
    raise CheckpointError(
        f"unsupported checkpoint file {(name or path.name)!r}: give a directory, a .safetensors "
        "file, or a .pt/.pth state dict"
    )


# Where a state dict hides inside a saved dict (training scripts save these keys); a prefix
# every key carries when the model was wrapped in DataParallel / DistributedDataParallel.
_STATE_KEYS = ("state_dict", "model_state_dict", "model")
_WRAPPER_PREFIX = "module."


# A .pt zip may unpack to at most 4x its size + 64 MiB (torch.save stores tensors uncompressed,
# so a real one unpacks to about its own size), and never beyond MAX_BYTES: refused unread above.
UNPACK_FACTOR, UNPACK_SLACK = 4, 64 << 20


def _check_torch_zip(path: Path, name: str) -> None:
    """Refuse a ``torch.save`` zip whose members would unpack to more than a file of its size
    may (:data:`UNPACK_FACTOR`, :data:`UNPACK_SLACK`, :data:`MAX_BYTES`), before torch reads
    any of it: 1.5 MB of deflated zeros otherwise took 1.5 GiB of memory. The sizes come from
    the zip's directory; a member that lies about its size fails zipfile's own check later."""
    if not zipfile.is_zipfile(path):
        return  # the legacy (pre-1.6) format: torch.load refuses it under weights_only, or reads
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(info.file_size for info in zf.infolist())
            count = len(zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{name} is a damaged zip ({err})") from None
    bound = min(MAX_BYTES, UNPACK_FACTOR * path.stat().st_size + UNPACK_SLACK)
    if total > bound or count > 100_000:
        raise CheckpointError(
            f"{name} would unpack to {total >> 20:,} MiB in {count:,} parts, more than a "
            f"file of its size may ({bound >> 20:,} MiB): refused before reading. Save it "
            "with torch.save(model.state_dict(), 'model.pt') (uncompressed), or as .safetensors"
        )


def _read_torch_state(path: Path, name: str) -> dict[str, Tensor]:
    """A ``torch.save``d state dict, read with ``weights_only=True`` (no code runs)."""
    _check_torch_zip(path, name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses code; report it, never fall back
        if "weights only" in str(err).lower() or "weights_only" in str(err):
            raise CheckpointError(
                f"{name} holds more than tensors (a whole pickled model, or objects of your own "
                "classes), and SAU Lab never unpickles such files because they can run code. "
                "Save the weights alone: torch.save(model.state_dict(), 'model.pt'), or "
                "safetensors.torch.save_file(model.state_dict(), 'model.safetensors')."
            ) from None
        raise CheckpointError(
            f"{name} is not a file saved by torch.save, or it is damaged ({type(err).__name__}). "
            "Give the weights as .safetensors, or as a .pt state dict saved with "
            "torch.save(model.state_dict(), 'model.pt')."
        ) from None
    if isinstance(state, dict):
        for key in _STATE_KEYS:
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(
            f"{name} does not hold a state dict of tensors (found {type(state).__name__}); save "
            "model.state_dict()"
        )
    return state


def _unwrap(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop the ``module.`` prefix DataParallel adds, when every key has it."""
    if state and all(k.startswith(_WRAPPER_PREFIX) for k in state):
        return {k[len(_WRAPPER_PREFIX) :]: v for k, v in state.items()}
    return state


def check_info(info: DatasetInfo, source: str = "checkpoint") -> DatasetInfo:
    """CheckpointError unless ``info`` is a geometry a model can be built for (bounded sizes)."""
    c, h, w = info.shape if len(info.shape) == 3 else (0, 0, 0)
    problems = []
    if not 2 <= info.num_classes <= MAX_CLASSES:
        problems.append(f"num_classes must be in [2, {MAX_CLASSES}], got {info.num_classes}")
    if len(info.shape) != 3 or c not in (1, 3) or not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        problems.append(
            f"shape must be (1 or 3, H, W) with H, W in [1, {MAX_SIDE}], got {info.shape}"
        )
    if len(info.mean) != c or len(info.std) != c:
        problems.append(
            f"mean and std need {c} values each, got {len(info.mean)} and {len(info.std)}"
        )
    if not all(math.isfinite(m) for m in info.mean) or not all(
        math.isfinite(s) and s > 0 for s in info.std
    ):
        problems.append("mean must be finite and std finite and positive")
    if problems:
        raise CheckpointError(f"{source} has a malformed 'dataset' block: " + "; ".join(problems))
    return info


# Keys a sidecar may carry beyond the typed ones are kept as written (``extra``): versions,
# created, format, source, purified_from, imported_from, defense, sau, ...
_TYPED = ("arch", "dataset", "data", "attack", "train", "seed", "metrics")


@dataclass(frozen=True)
class Sidecar:
    """A checkpoint's ``checkpoint.json``, read once and checked (:meth:`parse`).

    Every reader goes through it: the architecture, the data set's geometry and how to load the
    data set again (:meth:`data_spec`), the trigger the model was made with (:meth:`attack_spec`)
    and its training settings (:meth:`train_config`). Keys it does not type are kept in ``extra``
    and written back by :meth:`to_dict` in their place.
    """

    arch: str
    dataset: DatasetInfo | None = None  # the geometry a model is built for (checked)
    data: dict | None = None  # {"name", "root", "kwargs"}: how to load the data set (checked)
    attack: dict | None = None  # an AttackSpec's dict (read with attack_spec())
    train: dict | None = None  # a TrainConfig's dict (read with train_config())
    seed: int | None = None
    metrics: dict | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes, name: str = SIDECAR) -> Sidecar:
        """The checked sidecar in ``raw`` (JSON bytes); CheckpointError for anything malformed.
        ``name`` is how messages call the file."""
        if len(raw) > MAX_SIDECAR_BYTES:
            raise CheckpointError(
                f"{name} is over {MAX_SIDECAR_BYTES >> 20} MiB; it cannot be a sidecar"
            )
        try:
            meta = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise CheckpointError(f"{name} is not valid JSON: {str(err)[:200]}") from None
        return cls.from_dict(meta, name)

    @classmethod
    def from_dict(cls, meta: Any, name: str = SIDECAR) -> Sidecar:
        """The checked sidecar of a decoded JSON object; CheckpointError otherwise."""
        if not isinstance(meta, dict):
            raise CheckpointError(f"{name} must hold a JSON object, got {type(meta).__name__}")
        if "arch" not in meta:
            raise CheckpointError(
                f'{name} has no \'arch\': name the model\'s architecture, e.g. "arch": "wide_cnn" '
                "(`sau list` shows them)"
            )
        if not isinstance(meta["arch"], str):
            raise CheckpointError(
                f"{name}: 'arch' must be a model name, got {type(meta['arch']).__name__}"
            )
        data = meta.get("data")
        has_data = isinstance(data, dict) and isinstance(data.get("name"), str)
        if "dataset" not in meta and not has_data:
            raise CheckpointError(
                f'{name} names no data set: add "data": {{"name": "digits", "kwargs": '
                '{"resolution": 16}} (or write the sidecar with `sau import`)'
            )
        if data is not None:  # how to load the data set again: only options its loader takes
            if not has_data:
                raise CheckpointError(
                    f'{name}: \'data\' must be {{"name": ..., "kwargs": {{...}}}}'
                )
            try:
                dataset_options(data["name"], data.get("kwargs", {}))
            except ValueError as err:
                raise CheckpointError(f"{name}: {err}") from None
            if data.get("root") is not None and not isinstance(data["root"], str):
                raise CheckpointError(f"{name}: the data root must be a folder name")
        info = None
        if "dataset" in meta:
            try:
                info = DatasetInfo.from_dict(meta["dataset"])
            except (KeyError, TypeError, ValueError, OverflowError) as err:
                raise CheckpointError(
                    f"{name} has a malformed 'dataset' block: {str(err)[:200]}"
                ) from None
            check_info(info, name)
        for key in ("attack", "train", "metrics"):
            if meta.get(key) is not None and not isinstance(meta[key], dict):
                raise CheckpointError(f"{name}: {key!r} must be a JSON object")
        seed = meta.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise CheckpointError(f"{name}: 'seed' must be an integer, got {seed!r}")
        return cls(
            arch=meta["arch"],
            dataset=info,
            data=data,
            attack=meta.get("attack"),
            train=meta.get("train"),
            seed=seed,
            metrics=meta.get("metrics"),
            extra={k: v for k, v in meta.items() if k not in _TYPED},
        )

    def to_dict(self) -> dict:
        """The sidecar as JSON-able data (``extra`` first, as written)."""
        typed = {"arch": self.arch, "dataset": None if self.dataset is None else self.dataset.to_dict(),
                 "data": self.data, "attack": self.attack, "train": self.train, "seed": self.seed,
                 "metrics": self.metrics}  # fmt: skip
        return {**self.extra, **{k: v for k, v in typed.items() if v is not None}}

    def data_spec(self) -> DataSpec | None:
        """The data set the sidecar names: its ``data`` block, else its geometry's name and
        parameters, with the data set's recipe (:mod:`sau_core.lab.recipes`) for every option it
        leaves out (a minimal sidecar for digits means 16x16, as ``--help`` says). None when it
        names none; ValueError for options its loader does not take."""
        if self.data is not None:
            name, root, kwargs = (
                self.data["name"],
                self.data.get("root"),
                self.data.get("kwargs", {}),
            )
        elif self.dataset is not None:
            name, root, kwargs = self.dataset.name, None, dict(self.dataset.params)
        else:
            return None
        spec = DataSpec.from_dict({"name": name, "root": root, "kwargs": kwargs})
        return DataSpec(spec.name, spec.root, {**recipe(spec.name).data, **spec.kwargs})

    def attack_spec(self) -> AttackSpec | None:
        """The trigger the model was made with (None: unknown); ValueError when malformed."""
        from ..attacks import AttackSpec

        return None if not self.attack else AttackSpec.from_dict(self.attack)

    def train_config(self) -> TrainConfig | None:
        """The settings the model was trained with; None when the sidecar has none or they are
        not this version's (a model imported from elsewhere, an older SAU Lab)."""
        from ..train import TrainConfig

        if self.train is None:
            return None
        try:
            return TrainConfig(**self.train)
        except (TypeError, ValueError):
            return None


def _read_sidecar(path: Path) -> Sidecar:
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise CheckpointError(
                f"{path} is over {MAX_SIDECAR_BYTES >> 20} MiB; it cannot be a sidecar"
            )
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read: {err}") from None
    return Sidecar.parse(raw, str(path))


def sidecar_of(path: str | Path) -> Sidecar | None:
    """The checked sidecar of a checkpoint directory or weights file (None when it has none).

    CheckpointError when ``path`` does not exist or its sidecar is malformed."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    sidecar = path / SIDECAR if path.is_dir() else path.with_name(SIDECAR)
    return _read_sidecar(sidecar) if sidecar.is_file() else None


def load_state_into(model: nn.Module, state: dict[str, Tensor], source: str = "checkpoint") -> str:
    """``load_state_dict`` with a clear error naming missing, unexpected and mis-shaped tensors.

    Returns where the normalisation came from: "weights", or "data set" for a state dict of the
    bare network (no ``net.`` prefix), which keeps the model's own ``normalize.*``."""
    own = model.state_dict()
    normalization = "weights"
    # Tolerate a state dict saved from the bare network (without the normalisation wrapper).
    if not any(k.startswith("net.") for k in state) and any(k.startswith("net.") for k in own):
        normalization = "data set"
        state = {**{k: v for k, v in own.items() if k.startswith("normalize.")},
                 **{f"net.{k}": v for k, v in state.items()}}  # fmt: skip
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: {tuple(state[k].shape)} vs expected {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if not wrong:
        wrong = [
            f"{k}: dtype {state[k].dtype} vs expected {v.dtype}"
            for k, v in own.items()
            if k in state and state[k].is_floating_point() != v.is_floating_point()
        ]
    if missing or unexpected or wrong:
        parts = []
        if wrong and "dtype" in wrong[0]:
            parts.append(f"{len(wrong)} tensors have the wrong dtype (e.g. {'; '.join(wrong[:3])})")
        elif wrong:
            parts.append(f"{len(wrong)} tensors have the wrong shape (e.g. {'; '.join(wrong[:3])})")
        if missing:
            parts.append(f"{len(missing)} tensors are missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} are unexpected (e.g. {', '.join(unexpected[:3])})")
        arch = getattr(model, "arch", type(model).__name__)
        raise CheckpointError(
            f"{source} does not match architecture {arch!r} for this data set: " + "; ".join(parts)
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"{source}: {len(bad)} tensor{'s hold' if len(bad) != 1 else ' holds'} values that "
            f"are not finite (e.g. {bad[0]})"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return normalization


def check_outputs(model: nn.Module, info: DatasetInfo, source: str = "checkpoint") -> None:
    """CheckpointError when the model's outputs on a few images (black, white, grey, seeded
    noise) are not finite: finite weights can still overflow (a weight of 3e38 does), and SAU's
    loss would then be NaN at every step."""
    g = torch.Generator().manual_seed(0)
    shape = tuple(info.shape)
    x = torch.cat([torch.zeros(1, *shape), torch.ones(1, *shape), torch.full((1, *shape), 0.5),
                   torch.rand(5, *shape, generator=g)])  # fmt: skip
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        model.train(was)
    if not torch.isfinite(out).all():
        bad = int((~torch.isfinite(out)).any(1).sum())
        raise CheckpointError(
            f"{source}: the model's outputs are not finite on {bad} of {len(x)} test images "
            "(its weights are too large: they overflow); SAU Lab cannot evaluate or purify it"
        )


def load_checkpoint(
    path: str | Path,
    *,
    arch: str | None = None,
    info: DatasetInfo | None = None,
    device: str | torch.device = "cpu",
    name: str | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    label: str = "mean and std",
) -> Checkpoint:
    """Read a checkpoint directory or weights file into a fresh model (in eval mode).

    Args:
        path: a checkpoint directory, its ``model.safetensors``, or a ``.pt``/``.pth`` state dict
            (a ``checkpoint.json`` beside a weights file is its sidecar).
        arch: the architecture; needed when there is no sidecar, and it wins over the sidecar's.
        info: the data set's geometry; needed when there is no sidecar or the sidecar names only
            the data set (``data``) and not its geometry (``dataset``).
        device: where to put the model.
        name: how messages call the weights file (an upload's own name; default the file's).
        mean, std: the input normalisation of weights of the bare network (default: ``info``'s,
            the data set's); refused for weights that carry their own. ``label`` is how
            messages call them (the CLI: "--mean and --std").

    Accepted state dicts: SAU Lab's (``normalize.*`` and ``net.*``), the bare network's keys
    (``net.`` missing: the normalisation is ``info``'s mean and std), either inside a dict under
    ``state_dict``, ``model_state_dict`` or ``model``, and with DataParallel's ``module.``
    prefix. docs/your-model.md has the details.

    Raises:
        CheckpointError: missing or unreadable files, an unknown architecture, tensors that do
            not fit it or are not finite.
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
    shown = name or weights.name
    side = _read_sidecar(sidecar) if sidecar.is_file() else None
    if side is not None:
        arch = arch or side.arch
        if side.dataset is not None:
            info = info or side.dataset
        elif info is None:
            raise CheckpointError(
                f"{sidecar.name} names the data set but not its geometry: load it with its data "
                "set (the CLI and the dashboard do), or pass info"
            )
    elif arch is None or info is None:
        raise CheckpointError(
            f"{shown} has no {SIDECAR} beside it: name the architecture and the data set "
            "(sau: --model and --dataset; or write a sidecar once with `sau import`)"
        )
    if mean is not None or std is not None:
        mean, std = tuple(mean or info.mean), tuple(std or info.std)
        c = info.channels
        if len(mean) != c or len(std) != c or not all(v > 0 for v in std):
            raise CheckpointError(
                f"{label} need {c} value(s) each (the data has {c} channel(s)), and a positive "
                f"std; got {mean} and {std}"
            )
        info = replace(info, mean=mean, std=std)
    try:
        model = create_model(arch, info)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    normalization = load_state_into(model, _unwrap(_read_state(weights, shown)), source=shown)
    if normalization == "weights" and (mean is not None or std is not None):
        raise CheckpointError(
            f"{shown} carries its own normalisation (normalize.mean and .std); leave {label} out"
        )
    check_outputs(model, info, shown)
    model.to(device).eval()
    side = (replace(side, arch=arch, dataset=info) if side is not None
            else Sidecar(arch, info, extra={"format": FORMAT}))  # fmt: skip
    return Checkpoint(model, side, path, normalization)
