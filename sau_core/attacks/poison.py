"""The poisoning: :class:`AttackSpec` (one poisoning, JSON-able), the label rules, the poisoned
training set and the triggered test set (ASR and RA are measured on it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..data import DatasetInfo, ImageData
from .base import Trigger, batched
from .registry import _entry, create_trigger, make_config

LABEL_RULES = ("all2one", "all2all")
# ------------------------------------------------------------------------------- the poisoning
_SPEC_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "params": (dict,),
    "target": (int,),
    "label_rule": (str,),
    "poison_ratio": (float, int),
    "seed": (int,),
}


@dataclass(frozen=True)
class AttackSpec:
    """Everything that defines one poisoning; JSON-serialisable via :meth:`to_dict`.

    ``name``: registered attack (default "badnets"); ``params``: config overrides (a JSON-like
    dict, {} for the defaults); ``target``: target class (default 0); ``label_rule``: "all2one"
    or "all2all"; ``poison_ratio``: fraction of the training set to poison, in (0, 1] (default
    0.1); ``seed``: seed of the poisoned-sample draw (default 0).
    """

    name: str = "badnets"
    params: dict = field(default_factory=dict, hash=False)
    target: int = 0
    label_rule: str = "all2one"
    poison_ratio: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        params = self.params
        if dataclasses.is_dataclass(params) and not isinstance(params, type):
            params = dataclasses.asdict(params)
        object.__setattr__(self, "params", dict(params) if isinstance(params, Mapping) else params)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "params": dict(self.params),
            "target": self.target,
            "label_rule": self.label_rule,
            "poison_ratio": self.poison_ratio,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AttackSpec:
        """Inverse of :meth:`to_dict`; missing keys take the defaults, others raise ValueError."""
        if not isinstance(d, Mapping):
            raise ValueError(f"an attack spec must be a dict, got {type(d).__name__}")
        unknown = sorted(str(k) for k in d if k not in _SPEC_TYPES)
        if unknown:
            raise ValueError(
                f"unknown attack spec key(s) {', '.join(map(repr, unknown))}; "
                f"expected {', '.join(_SPEC_TYPES)}"
            )
        for key, value in d.items():
            kinds = _SPEC_TYPES[key]
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ValueError(
                    f"attack spec {key!r} must be {' or '.join(k.__name__ for k in kinds)}, "
                    f"got {value!r}"
                )
        kwargs = dict(d)
        if "poison_ratio" in kwargs:
            kwargs["poison_ratio"] = float(kwargs["poison_ratio"])
        return cls(**kwargs)

    def validate(self, info: DatasetInfo) -> None:
        """Check the spec against a data set: attack and params, target, rule, ratio; ValueError.

        A spec whose attack computes part of its trigger when the backdoor is planted (LF's
        pattern, Input-aware's generator: :func:`prepare_spec`) is checked without building the
        trigger until then."""
        config = self._checked(info)
        entry = _entry(self.name)
        if entry.prepare is None or self.prepared():
            entry.build(config, info)

    def prepared(self) -> bool:
        """Whether the spec carries what its attack computes when planted (always true for an
        attack that computes nothing)."""
        entry = _entry(self.name)
        return entry.prepare is None or bool(self.params.get(entry.computes))

    def trigger(self, info: DatasetInfo) -> Trigger:
        """The validated trigger of this spec for data set ``info``."""
        return create_trigger(self.name, info, self._checked(info))

    def _checked(self, info: DatasetInfo):
        """The attack's config after every check of the spec against ``info``; ValueError."""
        entry = _entry(self.name)
        k = info.num_classes
        if (
            isinstance(self.target, bool)
            or not isinstance(self.target, int)
            or not 0 <= self.target < k
        ):
            raise ValueError(f"target class must be an int in [0, {k - 1}], got {self.target!r}")
        if self.label_rule not in LABEL_RULES:
            raise ValueError(
                f"label_rule must be one of {list(LABEL_RULES)}, got {self.label_rule!r}"
            )
        if entry.clean_label and self.label_rule != "all2one":
            raise ValueError(f"{self.name} is a clean-label attack and supports only all2one")
        ratio = self.poison_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
            raise ValueError(f"poison_ratio must be in (0, 1], got {ratio!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if not isinstance(self.params, Mapping):
            raise ValueError(f"attack params must be a dict, got {type(self.params).__name__}")
        return make_config(self.name, self.params).validate(info)


def target_labels(y: Tensor, spec: AttackSpec, num_classes: int) -> Tensor:
    """The label rule: the attack's labels for true labels ``y`` (N,) -> (N,) int64.

    ``all2one``: every label becomes ``spec.target``; ``all2all``: ``(y + 1) mod num_classes``.
    """
    if spec.label_rule == "all2one":
        return torch.full_like(y, spec.target)
    if spec.label_rule == "all2all":
        return (y + 1) % num_classes
    raise ValueError(f"label_rule must be one of {list(LABEL_RULES)}, got {spec.label_rule!r}")


def _draw_poison(y: Tensor, spec: AttackSpec, clean_label: bool, g: torch.Generator) -> Tensor:
    n = len(y)
    if clean_label:
        pool = (y == spec.target).nonzero().squeeze(1)
        kind = f"training images of the target class {spec.target}"
    elif spec.label_rule == "all2one":
        pool = (y != spec.target).nonzero().squeeze(1)
        kind = f"training images outside the target class {spec.target}"
    else:
        pool = torch.arange(n)
        kind = "training images"
    if len(pool) == 0:
        raise ValueError(f"{spec.name}: there are no {kind} to poison")
    count = min(max(1, round(spec.poison_ratio * n)), len(pool))
    chosen = pool[torch.randperm(len(pool), generator=g)[:count]]
    return chosen.sort().values


def poison_indices(train: ImageData, spec: AttackSpec) -> Tensor:
    """Indices of the training images to poison: sorted int64 (P,), on the CPU.

    ``P = round(poison_ratio * N)`` (at least 1), drawn without replacement by
    ``torch.randperm`` from ``torch.Generator().manual_seed(spec.seed)``, so the same seed gives
    the same indices. Candidates: for clean-label attacks (SIG) only target-class images, and P
    is capped at their number; for all2one dirty-label attacks only images whose true label is
    not the target (relabelling a target-class image would be a no-op, so every poisoned sample
    really teaches the backdoor, as is common), P capped likewise; for all2all every image.
    The ratio is always relative to the whole training set.
    """
    trigger = spec.trigger(train.info)
    g = torch.Generator().manual_seed(spec.seed)
    return _draw_poison(train.y.cpu(), spec, trigger.clean_label, g)


@dataclass
class PoisonedTrain:
    """A poisoned training set.

    ``data``: the full training set, poisoned images replaced and their labels set by the rule
    (clean-label attacks keep the labels); ``poison_idx``: sorted int64 (P,); ``cross_idx``:
    sorted int64 (Q,) WaNet noise-mode cross samples (true labels), disjoint from
    ``poison_idx``, empty for other attacks.
    """

    data: ImageData
    poison_idx: Tensor
    cross_idx: Tensor


def prepare_spec(spec: AttackSpec, train: ImageData) -> AttackSpec:
    """``spec`` made plantable on ``train`` (the clean training set): an attack that computes a
    piece of its trigger from the data (LF's pattern, Input-aware's generator) does it here,
    once, and the returned spec carries it. An attack whose trigger reads a file outside the
    spec (SSBA's encoder) records which one (its SHA-256) where the spec does not say yet.
    Every other spec comes back unchanged."""
    entry = _entry(spec.name)
    if entry.pins is not None:
        missing = {k: v for k, v in entry.pins().items() if not spec.params.get(k)}
        if missing:
            spec = dataclasses.replace(spec, params={**spec.params, **missing})
    if spec.prepared():
        return spec
    target = spec.target if spec.label_rule == "all2one" else None  # all2all: untargeted
    with torch.enable_grad():  # the callers may run under no_grad; the attacker trains here
        made = entry.prepare(make_config(spec.name, spec.params), train, target, spec.seed)
    return dataclasses.replace(spec, params={**spec.params, entry.computes: made})


def poison_train(train: ImageData, spec: AttackSpec, batch_size: int = 1024) -> PoisonedTrain:
    """Poison a training set by ``spec``; ``train`` itself is never modified.

    The poisoned indices are those of :func:`poison_indices`. For triggers with cross samples
    (WaNet), ``round(cross_ratio * P)`` more images (capped at the remaining ones) are drawn
    from the non-poisoned ones with the same generator, continued, and warped with random noise
    from it; they keep their true labels. The poisoning is static: drawn once, here, not per
    epoch. The trigger runs in batches of ``batch_size`` on ``train``'s device.
    """
    trigger = spec.trigger(train.info)
    g = torch.Generator().manual_seed(spec.seed)
    y_cpu = train.y.cpu()
    poison_idx = _draw_poison(y_cpu, spec, trigger.clean_label, g)
    x, y = train.x.clone(), train.y.clone()
    dev_poison = poison_idx.to(x.device)
    x[dev_poison] = trigger.poison(train.x[dev_poison], train.y[dev_poison], train, spec.seed,
                                   batch_size)  # fmt: skip
    if not trigger.clean_label:
        y[dev_poison] = target_labels(train.y[dev_poison], spec, train.info.num_classes)

    cross_idx = torch.empty(0, dtype=torch.long)
    if trigger.has_cross:
        free = torch.ones(len(y_cpu), dtype=torch.bool)
        free[poison_idx] = False
        pool = free.nonzero().squeeze(1)
        count = min(round(trigger.cross_ratio * len(poison_idx)), len(pool))
        cross_idx = pool[torch.randperm(len(pool), generator=g)[:count]].sort().values
        dev_cross = cross_idx.to(x.device)
        x[dev_cross] = trigger.cross_set(train.x[dev_cross], g, batch_size)
    return PoisonedTrain(ImageData(x, y, train.info), poison_idx, cross_idx)


@dataclass
class BackdoorTest:
    """A triggered test set: ``x`` (M, C, H, W) triggered images, ``y`` (M,) their TRUE labels
    (robust accuracy), ``target`` (M,) the attack's labels by the rule (attack success rate),
    ``index`` (M,) int64 their indices in the test set."""

    x: Tensor
    y: Tensor
    target: Tensor
    index: Tensor

    def __len__(self) -> int:
        return len(self.y)


def backdoor_test(test: ImageData, spec: AttackSpec, batch_size: int = 1024) -> BackdoorTest:
    """The test set with the trigger applied, for ASR and RA.

    all2one (also clean-label attacks): only test images whose true label is not the target, as
    a target-class image says nothing about the backdoor; all2all: every test image.
    """
    trigger = spec.trigger(test.info)
    if spec.label_rule == "all2one":
        index = (test.y.cpu() != spec.target).nonzero().squeeze(1)
    else:
        index = torch.arange(len(test))
    dev_index = index.to(test.x.device)
    x = batched(trigger, test.x[dev_index], batch_size)
    y = test.y[dev_index].clone()
    return BackdoorTest(x, y, target_labels(y, spec, test.info.num_classes), index)
