"""The jobs a runner takes: plant a backdoor (:class:`AttackJob`) or run a defence on a
checkpoint (:class:`PurifyJob`), each a frozen, JSON-able description that ``config.json`` keeps."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..attacks import AttackSpec
from ..data import DataSpec, Split
from ..defenses import get_defense
from ..io.checkpoint import Checkpoint, sidecar_of
from ..lab.recipes import recipe
from ..models import MODELS
from ..train import TrainConfig, default_train_config


def _spec_from(d: Any) -> AttackSpec | None:
    return None if d is None else AttackSpec.from_dict(d)


# ------------------------------------------------------------------------------------ the jobs
@dataclass(frozen=True)
class AttackJob:
    """Train ``arch`` on ``data`` poisoned by ``attack`` (see :func:`~sau_core.pipeline.plant_backdoor`)."""

    data: DataSpec = field(
        default_factory=lambda: DataSpec("digits", None, dict(recipe("digits").data))
    )
    arch: str | None = None  # None: the data set's model (sau_core.lab.recipes)
    attack: AttackSpec = field(default_factory=AttackSpec)
    train: TrainConfig | None = None  # None: the data set's defaults (default_train_config)
    device: str | None = None  # None: the best available
    download: bool = False  # fetch a missing torchvision data set (needs the network)

    kind = "attack"

    def __post_init__(self) -> None:
        if self.arch is None:
            object.__setattr__(self, "arch", recipe(self.data.name).arch)

    def check(self) -> AttackJob:
        """Checks that need no data: the model name and the training settings; ValueError."""
        if self.arch not in MODELS:
            raise ValueError(f"unknown model {self.arch!r}; choose from {', '.join(MODELS)}")
        if self.train is not None:
            self.train.validate()
        return self

    def resolved(self) -> AttackJob:
        """This job with the data set's training defaults filled in (what ``config.json`` keeps)."""
        if self.train is not None:
            return self
        return replace(self, train=default_train_config(self.data.name))

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "data": self.data.to_dict(),
            "arch": self.arch,
            "attack": self.attack.to_dict(),
            "train": None if self.train is None else self.train.to_dict(),
            "device": self.device,
            "download": self.download,
        }

    @classmethod
    def from_dict(cls, d: dict) -> AttackJob:
        train = d.get("train")
        return cls(
            data=DataSpec.from_dict(d["data"]),
            arch=None if d.get("arch") is None else str(d["arch"]),
            attack=AttackSpec.from_dict(d.get("attack", {})),
            train=None if train is None else TrainConfig(**train).validate(),
            device=d.get("device"),
            download=bool(d.get("download", False)),
        )


@dataclass(frozen=True)
class PurifyJob:
    """Run a defence (SAU by default) on the checkpoint at ``checkpoint`` (see
    :func:`~sau_core.pipeline.purify_checkpoint`).

    ``settings`` and ``clean_ratio`` left None take the data set's defaults
    (:mod:`sau_core.lab.recipes`) when the job is submitted, so ``config.json`` always records the
    numbers used."""

    checkpoint: str  # a checkpoint directory: a finished attack run, a ready-made one, an import
    settings: Any = None  # the defence's config; None: the data set's (Defense.default_config)
    clean_ratio: float | None = None  # share of the training set the defender holds
    clean_seed: int = 0
    balanced: bool = False
    attack: AttackSpec | None = None  # the trigger when known (ASR, RA, per-class ASR); else None
    data: DataSpec | None = None  # None: the data set the checkpoint names
    device: str | None = None
    download: bool = False
    defense: str = "sau"  # a name in sau_core.defenses.DEFENSES

    kind = "purify"

    def resolved(self) -> PurifyJob:
        """This job with the data set's defaults where it leaves a setting open."""
        if self.settings is not None and self.clean_ratio is not None:
            return self
        name = self.data.name if self.data is not None else _checkpoint_data_name(self.checkpoint)
        return replace(
            self,
            settings=self.settings
            if self.settings is not None
            else get_defense(self.defense).default_config(name),
            clean_ratio=self.clean_ratio
            if self.clean_ratio is not None
            else recipe(name).clean_ratio,
        )

    def check(self) -> PurifyJob:
        entry = get_defense(self.defense)
        job = self.resolved()
        if not isinstance(job.settings, entry.config):
            raise ValueError(f"the settings of a {self.defense} job must be a "
                             f"{entry.config.__name__}, got {type(job.settings).__name__}")  # fmt: skip
        job.settings.validate()
        ratio = job.clean_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ValueError(f"the clean ratio must be in (0, 1], got {ratio!r}")
        if not Path(self.checkpoint).exists():
            raise ValueError(f"no checkpoint at {self.checkpoint}")
        return self

    def to_dict(self) -> dict:
        settings = None if self.settings is None else self.settings.to_dict()
        d = {
            "kind": self.kind,
            "checkpoint": str(self.checkpoint),
            "defense": self.defense,
            "settings": settings,
            "clean_ratio": self.clean_ratio,
            "clean_seed": self.clean_seed,
            "balanced": self.balanced,
            "attack": None if self.attack is None else self.attack.to_dict(),
            "data": None if self.data is None else self.data.to_dict(),
            "device": self.device,
            "download": self.download,
        }
        if self.defense == "sau":  # the key SAU runs have always had (pages and reports read it)
            d["sau"] = settings
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PurifyJob:
        """Inverse of :meth:`to_dict`; also reads run directories from before the defence
        registry (no ``defense``: SAU, its settings under ``sau``)."""
        defense = d.get("defense", "sau")
        entry = get_defense(defense)
        settings = d.get("settings", d.get("sau") if defense == "sau" else None)
        ratio = d.get("clean_ratio")
        return cls(
            checkpoint=str(d["checkpoint"]),
            settings=None if settings is None else entry.config.from_dict(settings),
            clean_ratio=None if ratio is None else float(ratio),
            clean_seed=int(d.get("clean_seed", 0)),
            balanced=bool(d.get("balanced", False)),
            attack=_spec_from(d.get("attack")),
            data=None if d.get("data") is None else DataSpec.from_dict(d["data"]),
            device=d.get("device"),
            download=bool(d.get("download", False)),
            defense=defense,
        )


def _checkpoint_data_name(path: str) -> str:
    """The data set a checkpoint's sidecar names ('' when it names none or cannot be read)."""
    try:
        side = sidecar_of(path)
        named = None if side is None else side.data_spec()
    except ValueError:  # CheckpointError is one
        return ""
    return "" if named is None else named.name


def checkpoint_data(ckpt: Checkpoint) -> DataSpec:
    """The data set a checkpoint was made for: its ``data`` block, else its geometry's name
    (:meth:`~sau_core.io.checkpoint.Sidecar.data_spec`)."""
    return ckpt.sidecar.data_spec() or DataSpec(ckpt.info.name, None, dict(ckpt.info.params))


def check_fits(ckpt: Checkpoint, split: Split) -> None:
    """ValueError when the data set's images or classes differ from what the model expects."""
    a, b = ckpt.info, split.info
    if tuple(a.shape) != tuple(b.shape) or a.num_classes != b.num_classes:
        raise ValueError(
            f"the checkpoint expects {a.num_classes} classes of {tuple(a.shape)} images, the "
            f"data set gives {b.num_classes} classes of {tuple(b.shape)} images"
        )


def job_from_config(config: dict) -> AttackJob | PurifyJob:
    """The job a run's ``config.json`` ``job`` block describes (to repeat a run)."""
    kind = config.get("kind")
    if kind == "attack":
        return AttackJob.from_dict(config)
    if kind == "purify":
        return PurifyJob.from_dict(config)
    raise ValueError(f"not a job description (kind {kind!r})")
