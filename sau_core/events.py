"""Typed progress events that long jobs (training, SAU) send to a callback.

A job never prints: it calls ``callback(event)`` with one of the dataclasses below, in order.
Every event is a plain dataclass of numbers, lists and (for :class:`ProbeSnapshot`) tensors, so
it can be queued to a UI thread, written as JSON lines (:func:`to_record`) or ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Protocol

from torch import Tensor

__all__ = [
    "Callback",
    "DefenseBatch",
    "DefenseRound",
    "Evaluated",
    "Finished",
    "ProbeSnapshot",
    "SAUBatch",
    "SAURound",
    "Started",
    "NonFiniteLoss",
    "StopFlag",
    "TrainBatch",
    "TrainEpoch",
    "to_record",
]


class NonFiniteLoss(ValueError):
    """A run's loss became NaN or infinite: the run stops with this message, never "finished"."""


class StopFlag(Protocol):
    """Anything with ``is_set()``; ``threading.Event`` is the usual one."""

    def is_set(self) -> bool: ...


@dataclass
class Started:
    job: str  # "train", or the defence's registry name ("sau", "ft", ...)
    total_steps: int  # batches the whole job will run
    device: str  # e.g. "cpu" or "cuda:0 (NVIDIA H200)"
    config: dict = field(default_factory=dict)
    resumed_from: int = 0  # rounds (epochs) already done when a job resumes; 0 for a fresh start


@dataclass
class TrainBatch:
    epoch: int
    step: int  # global batch counter, from 1
    total_steps: int
    loss: float
    lr: float


@dataclass
class Evaluated:
    """Metrics of one evaluation (see :class:`sau_core.metrics.Evaluation`)."""

    acc: float
    asr: float | None = None
    ra: float | None = None
    per_class_asr: dict[int, float] | None = None


@dataclass
class TrainEpoch:
    epoch: int  # from 1
    epochs: int
    loss: float  # mean training loss over the epoch
    train_acc: float  # accuracy on the (possibly poisoned) training batches
    lr: float
    elapsed: float  # seconds since start
    eta: float  # seconds left, extrapolated
    acc: float | None = None  # clean test accuracy, when an evaluation set was given
    asr: float | None = None
    ra: float | None = None


@dataclass(kw_only=True)
class DefenseBatch:
    """One optimisation step of a defence (other than SAU, which sends :class:`SAUBatch`)."""

    round: int  # from 1
    step: int  # global batch counter, from 1
    total_steps: int
    loss: float  # the loss the step minimised
    losses: dict[str, float] = field(default_factory=dict)  # its named terms
    n: int = 0  # batch size


@dataclass(kw_only=True)
class DefenseRound:
    """The end of one round (a pass over the clean set) of any defence.

    Every defence reports these numbers; a defence with more to say subclasses it
    (:class:`SAURound`) or puts them in ``extras`` (for example the channels pruned so far).
    """

    round: int  # from 1
    rounds: int
    acc: float  # clean accuracy of the model on the live evaluation subset (NaN: no test set)
    asr: float | None  # None when the trigger is unknown
    ra: float | None
    per_class_asr: dict[int, float] | None
    lr: float
    elapsed: float
    eta: float
    stopped: bool = False
    # per class c, the share of the live triggered images (neither of c nor aimed at c) the model
    # sends to c (sau_core.metrics.off_target_pull); None when the trigger is unknown
    off_target: dict[int, float] | None = None
    losses: dict[str, float] = field(default_factory=dict)  # named means over the round's batches
    extras: dict = field(default_factory=dict)  # the defence's own numbers (JSON-able)
    defense: str = ""  # the registry name of the defence that sent it


@dataclass
class SAUBatch:
    """One outer step of SAU on one batch of the clean set."""

    round: int  # from 1
    step: int  # global batch counter, from 1
    total_steps: int
    l_cl: float  # clean cross entropy of h
    l_at: float  # adversarial cross entropy of h on x + delta
    l_shared: float  # shared adversarial risk term (potential poison samples only)
    loss: float  # lmd_1 * l_cl + lmd_2 * l_at + lmd_3 * l_shared
    l_adv: float  # inner loop, last PGD step: adversarial loss term
    l_share: float  # inner loop, last PGD step: Jensen-Shannon sharing term
    pgd_steps: int  # PGD steps actually run (early exit when all samples are shared)
    n: int  # batch size
    adv_h: int  # counts at the final perturbation, compared with each model's clean prediction
    adv_h0: int
    common: int
    shared: int
    potential_poison: int  # samples the outer loss acts on
    saturated: int = 0  # of those, where h's softmax is too sure for L_shared to move it


@dataclass(kw_only=True)
class SAURound(DefenseRound):
    """A round of SAU: the generic numbers (``losses`` holds L_cl and L_shared) and SAU's own."""

    adv_h: int  # totals over the round's batches
    adv_h0: int
    common: int
    shared: int
    n: int
    disagreement: float  # share of the clean evaluation images where h and h0 disagree
    l_cl: float  # means over the round's batches
    l_shared: float
    potential_poison: int = 0  # totals over the round's batches (see SAUBatch)
    saturated: int = 0
    # of the potential-poison samples, how many h0 sends to each class (K counts): a backdoored
    # model's adversarial examples crowd into its target class, and SAU can only unlearn the
    # backdoor while its search still lands there
    adv_classes: list[int] | None = None


@dataclass
class ProbeSnapshot:
    """The fixed probe batch at the end of a round (round 0: before purification)."""

    round: int
    x: Tensor  # (P, C, H, W) clean images
    delta: Tensor  # (P, C, H, W) shared adversarial perturbation found for the current h
    y: Tensor  # (P,) true labels
    pred_h0_clean: Tensor  # (P,)
    pred_h_clean: Tensor
    pred_h0_adv: Tensor  # predictions on x + delta
    pred_h_adv: Tensor
    adv_h: Tensor  # (P,) bool flags
    adv_h0: Tensor
    common: Tensor
    shared: Tensor


@dataclass
class Finished:
    job: str
    stopped: bool  # True when the stop flag ended the job early
    elapsed: float
    final: Evaluated | None = None


Callback = Callable[[Any], None]


def to_record(event: Any) -> dict:
    """A JSON-able dict of an event (tensors become nested lists), tagged with its type."""
    if not is_dataclass(event):
        raise TypeError(f"not an event: {event!r}")
    out: dict[str, Any] = {"event": type(event).__name__}
    for f in fields(event):
        value = getattr(event, f.name)
        if isinstance(value, Tensor):
            value = value.detach().cpu().tolist()
        elif is_dataclass(value):
            value = asdict(value)
        elif isinstance(value, dict):
            value = {str(k): v for k, v in value.items()}
        out[f.name] = value
    return out


def emit(callback: Callback | None, event: Any) -> None:
    if callback is not None:
        callback(event)


ROUND_EVENTS: dict[str, type] = {"DefenseRound": DefenseRound, "SAURound": SAURound}


def round_from_record(record: dict) -> DefenseRound:
    """A round event back from its :func:`to_record` dict (a resume file's history).

    Fields added since a record was written take their defaults (older run directories stay
    readable); an unknown event, a missing required field or an unknown field is a ValueError.
    """
    if not isinstance(record, dict):
        raise ValueError("a round record must be an object")
    cls = ROUND_EVENTS.get(record.get("event"))
    if cls is None:
        raise ValueError(f"history holds {record.get('event')!r}, not a defence's round")
    d = {k: v for k, v in record.items() if k != "event"}
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    for key in ("per_class_asr", "off_target"):
        if isinstance(d.get(key), dict):
            d[key] = {int(k): v for k, v in d[key].items()}
    return cls(**d)
