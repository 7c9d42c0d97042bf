"""What every defence shares: the registry entry, the result, the resume state, the live
evaluation and the round loop the baselines run in.

A defence is a function ``run(model, clean, config, *, test, backdoor, device, callback, stop,
resume, on_state) -> DefenseResult`` with a config class (frozen dataclass, fields with form
metadata) and a registry entry (:class:`Defense`) naming its paper. Its events are
:class:`~sau_core.events.Started`, per round a :class:`~sau_core.events.DefenseRound` (SAU: the
subclass :class:`~sau_core.events.SAURound`) after its batch events, and
:class:`~sau_core.events.Finished`; ``on_state`` receives a :class:`DefenseState` after every
completed round, and ``resume`` continues from one.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import ImageData
from ..device import cpu_copy, describe, pick_device
from ..events import (
    Callback,
    DefenseBatch,
    DefenseRound,
    Evaluated,
    Finished,
    NonFiniteLoss,
    Started,
    StopFlag,
    emit,
)
from ..lab.recipes import recipe
from ..metrics import Evaluation, der, evaluate, off_target_pull, per_class_asr, predict
from ..state import DefenseState

__all__ = [
    "Defense",
    "DefenseResult",
    "DefenseState",
    "Paper",
    "Looped",
    "RoundLoop",
    "RunContext",
    "defense_run",
    "frozen_copy",
    "full_eval",
    "live_eval",
    "live_sets",
    "subset",
]


@dataclass(frozen=True)
class Paper:
    authors: str
    title: str
    venue: str
    arxiv: str = ""  # arXiv id, e.g. "2307.10562"

    def cite(self) -> str:
        link = f", https://arxiv.org/abs/{self.arxiv}" if self.arxiv else ""
        return f'{self.authors}, "{self.title}", {self.venue}{link}'


@dataclass(frozen=True)
class Defense:
    """A registry entry: what the defence is called, where it comes from, how it is set and run.

    ``summary`` and ``weakness`` are the teaching text (plain words: what it does; where it is
    known to fail). ``defaults`` maps a data set's name to settings that differ from the
    paper's there: the data set's :class:`~sau_core.lab.recipes.Recipe` holds them (chosen by
    measurement, see ``bench/bench_defenses.py``).
    """

    name: str
    title: str
    paper: Paper
    config: type  # a frozen dataclass of fields with form metadata (to_dict/from_dict/validate)
    run: Callable[..., DefenseResult]
    summary: str
    weakness: str
    check_model: Callable[[nn.Module], None] | None = None  # ValueError: cannot run on this model

    def default_config(self, dataset: str | None = None, **overrides: Any):
        """The config for ``dataset``: the paper's settings, the data set's where they differ,
        then ``overrides``; validated (ValueError names the setting)."""
        base = recipe(dataset).defense(self.name)
        base.update(overrides)
        return self.config.from_dict(base)


@dataclass
class DefenseResult:
    model: nn.Module  # the defended model (a new object, eval mode, no grad)
    before: Evaluation  # full test sets, the backdoored model
    after: Evaluation  # full test sets, the defended model
    history: list[DefenseRound]
    rounds_done: int
    stopped: bool
    elapsed: float
    config: Any
    device: str
    defense: str = "sau"
    notes: dict = field(default_factory=dict)  # the defence's own results (JSON-able)

    def der(self) -> float | None:
        return None if self.before.asr is None else der(self.before, self.after)


def check_state(resume: DefenseState, defense: str, config, rounds: int) -> None:
    """ValueError unless ``resume`` was made by ``defense`` with ``config``, within ``rounds``."""
    if not isinstance(resume, DefenseState):
        raise TypeError(f"resume must be a DefenseState, got {type(resume).__name__}")
    if resume.defense != defense:
        raise ValueError(f"the resume state is of defence {resume.defense!r}, not {defense!r}")
    r = resume.round
    if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= rounds:
        raise ValueError(f"resume round must be in [0, {rounds}], got {r!r}")
    if len(resume.history) != r:
        raise ValueError(f"resume state holds {len(resume.history)} round records for {r} rounds")
    saved, now = dict(resume.config), config.to_dict()
    if saved != now:
        changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise ValueError(
            f"the {defense.upper()} settings differ from the interrupted run's: {', '.join(changed)}"
        )


# ----------------------------------------------------------------------- shared pieces
def frozen_copy(model: nn.Module, device: torch.device, fmt=torch.contiguous_format) -> nn.Module:
    """A copy of ``model`` on ``device``, eval mode, parameters without grad."""
    m = copy.deepcopy(model).to(device=device, memory_format=fmt).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def subset(n: int, k: int, seed: int) -> Tensor:
    """``k`` sorted indices of ``n`` drawn with ``seed`` (all of them when k <= 0 or k >= n)."""
    if k <= 0 or k >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:k].sort().values


def live_sets(test: ImageData | None, backdoor, eval_size: int, seed: int):
    """The fixed, seeded subsets evaluated every round: (x, y, (bx, by, btarget) or None)."""
    if test is None:
        return None
    idx = subset(len(test), eval_size, seed + 2)
    bd = None
    if backdoor is not None:
        bidx = subset(len(backdoor.y), eval_size, seed + 3)
        bd = (backdoor.x[bidx], backdoor.y[bidx], backdoor.target[bidx])
    return test.x[idx], test.y[idx], bd


def live_eval(h, live, h0_pred: Tensor | None, k: int, device) -> dict:
    """ACC, ASR, RA, per-class ASR, off-target pull and h/h0 disagreement on the live subsets."""
    out = {"acc": float("nan"), "asr": None, "ra": None, "per_class_asr": None,
           "off_target": None, "disagreement": float("nan")}  # fmt: skip
    if live is None:
        return out
    x, y, bd = live
    pred = predict(h, x, device=device)
    out["acc"] = float((pred == y).float().mean())
    if h0_pred is not None:
        out["disagreement"] = float((pred != h0_pred).float().mean())
    if bd is not None:
        bx, by, bt = bd
        bpred = predict(h, bx, device=device)
        out["asr"] = float((bpred == bt).float().mean())
        out["ra"] = float((bpred == by).float().mean())
        out["per_class_asr"] = per_class_asr(bpred, by, bt, k)
        out["off_target"] = off_target_pull(bpred, by, bt, k)
    return out


def full_eval(model, test, backdoor, k: int, device) -> Evaluation:
    if test is None:
        return Evaluation(acc=float("nan"))
    return evaluate(model, test.x, test.y, backdoor, num_classes=k, device=device)


def cosine_lr(base: float, epoch: int, epochs: int) -> float:
    """``CosineAnnealingLR(T_max=epochs)`` stepped once per epoch: the rate of ``epoch`` (from 0)."""
    return base * 0.5 * (1.0 + math.cos(math.pi * epoch / max(1, epochs)))


def check_finite(defense: str, rnd: int, losses: dict[str, float]) -> None:
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        shown = ", ".join(f"{k} {v:.3g}" for k, v in bad.items())
        raise NonFiniteLoss(
            f"{defense.upper()}'s loss is not finite in round {rnd} ({shown}): the model's outputs "
            "overflow. The run stops here; try a smaller learning rate, or check the model's weights"
        )


# ----------------------------------------------------------------------------- the loop
@dataclass
class RoundLoop:
    """Rounds over a shuffled clean set, one optimiser step per batch: the loop of the baselines.

    The defence supplies the module it trains (``trainable``: h, or h with masks, whose
    ``state_dict`` is the resume state), the optimiser over it, ``step(x, y, generator) ->
    (loss, named losses)`` and what to evaluate (``evaluated()``: the model as it would be
    returned now). The loop shuffles, stops, evaluates, reports, and saves and restores state.
    """

    trainable: nn.Module
    optimizer: torch.optim.Optimizer
    step: Callable[[Tensor, Tensor, torch.Generator], tuple[Tensor, dict[str, Tensor]]]
    evaluated: Callable[[], nn.Module]
    lr_at: Callable[[int], float] | None = None  # the rate of round r (from 1); None: constant
    after_step: Callable[[], None] | None = None  # e.g. keep pruned weights at zero
    extras: Callable[[int], dict] | None = None  # the defence's numbers for round r's event

    def run(self, ctx: RunContext) -> Looped:
        """Run the rounds of ``ctx`` (its clean set, evaluation sets, stop flag, resume state)."""
        h0, clean, device, callback, stop = ctx.h0, ctx.clean, ctx.device, ctx.callback, ctx.stop
        resume, on_state = ctx.resume, ctx.on_state
        # the config has rounds, batch_size, seed and eval_size
        cfg, k, name = ctx.config, clean.info.num_classes, ctx.defense
        gen = torch.Generator().manual_seed(cfg.seed)
        history: list[DefenseRound] = []
        done_before, elapsed_before = 0, 0.0
        if resume is not None:
            check_state(resume, name, cfg, cfg.rounds)
            try:
                self.trainable.load_state_dict(resume.h)
                self.optimizer.load_state_dict(resume.optimizer)
                gen.set_state(resume.generator)
            except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
                raise ValueError(f"the resume state does not fit this model: {err}") from None
            history = list(resume.history)
            done_before, elapsed_before = resume.round, float(resume.elapsed)
        x_all, y_all = clean.x.to(device), clean.y.to(device)
        n = len(y_all)
        batches = math.ceil(n / cfg.batch_size)
        total = batches * cfg.rounds
        live = live_sets(ctx.test, ctx.backdoor, cfg.eval_size, cfg.seed)
        h0_pred = predict(h0, live[0], device=device) if live else None
        emit(callback, Started(name, total, describe(device), cfg.to_dict(), done_before))

        start, stopped = time.perf_counter() - elapsed_before, False
        step, rounds_done = done_before * batches, done_before
        for rnd in range(done_before + 1, cfg.rounds + 1):
            lr = self.lr_at(rnd) if self.lr_at is not None else self.optimizer.param_groups[0]["lr"]
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            order = torch.randperm(n, generator=gen).to(device)
            sums: dict[str, Tensor] = {}
            count = 0
            for i in range(0, n, cfg.batch_size):
                if stop is not None and stop.is_set():
                    stopped = True
                    break
                idx = order[i : i + cfg.batch_size]
                loss, terms = self.step(x_all[idx], y_all[idx], gen)
                if self.after_step is not None:
                    self.after_step()
                terms = {"loss": loss.detach(), **{k_: v.detach() for k_, v in terms.items()}}
                for key, v in terms.items():
                    sums[key] = sums.get(key, 0.0) + v.float()
                count += 1
                step += 1
                row = {key: float(v) for key, v in terms.items()}
                emit(callback, DefenseBatch(round=rnd, step=step, total_steps=total,
                                            loss=row.pop("loss"), losses=row, n=len(idx)))  # fmt: skip
            if stopped and count == 0:
                break
            rounds_done = rnd if not stopped else rnd - 1
            means = {key: float(v) / count for key, v in sums.items()}
            check_finite(name, rnd, means)
            elapsed = time.perf_counter() - start
            ev = live_eval(self.evaluated(), live, h0_pred, k, device)
            rec = DefenseRound(
                round=rnd, rounds=cfg.rounds, acc=ev["acc"], asr=ev["asr"], ra=ev["ra"],
                per_class_asr=ev["per_class_asr"], off_target=ev["off_target"], lr=lr,
                elapsed=elapsed, eta=elapsed / step * (total - step) if not stopped else 0.0,
                stopped=stopped, losses=means,
                extras=self.extras(rnd) if self.extras is not None else {},
                defense=name,
            )  # fmt: skip
            history.append(rec)
            emit(callback, rec)
            if stopped:
                break
            if on_state is not None:
                on_state(
                    DefenseState(
                        round=rnd,
                        h=cpu_copy(self.trainable.state_dict()),
                        optimizer=cpu_copy(self.optimizer.state_dict()),
                        generator=gen.get_state(),
                        history=list(history),
                        elapsed=time.perf_counter() - start,
                        config=cfg.to_dict(),
                        defense=name,
                    )
                )
        return Looped(history, rounds_done, stopped, time.perf_counter() - start)


@dataclass
class Looped:
    """What the rounds left: their records, how many completed, whether Stop ended them."""

    history: list[DefenseRound]
    rounds_done: int
    stopped: bool
    elapsed: float


@dataclass
class RunContext:
    """One run of a defence: its arguments (the shared signature's), the validated config, the
    device, the frozen backdoored model h0 and its full evaluation before the defence."""

    defense: str
    config: Any
    clean: ImageData
    test: ImageData | None
    backdoor: Any
    device: torch.device
    callback: Callback | None
    stop: StopFlag | None
    resume: DefenseState | None
    on_state: Callable[[DefenseState], None] | None
    h0: nn.Module
    before: Evaluation

    @property
    def num_classes(self) -> int:
        return self.clean.info.num_classes

    def finish(self, model: nn.Module, looped: Looped, notes: dict | None = None) -> DefenseResult:
        """Evaluate the defended ``model`` on the full sets, send :class:`Finished`, build the
        result."""
        model = model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        after = full_eval(model, self.test, self.backdoor, self.num_classes, self.device)
        emit(self.callback, Finished(self.defense, looped.stopped, looped.elapsed,
                                     Evaluated(after.acc, after.asr, after.ra,
                                               after.per_class_asr)))  # fmt: skip
        return DefenseResult(model, self.before, after, looped.history, looped.rounds_done,
                             looped.stopped, looped.elapsed, self.config, describe(self.device),
                             self.defense, notes or {})  # fmt: skip


def defense_run(name: str, config_cls: type):
    """Make ``body(ctx) -> DefenseResult`` a defence's run function with the shared signature
    ``(model, clean, config=None, *, test, backdoor, device, callback, stop, resume, on_state)``:
    the config validated (None: ``config_cls()``), the device picked, h0 frozen on it and
    evaluated before the body runs."""

    def wrap(body: Callable[[RunContext], DefenseResult]) -> Callable[..., DefenseResult]:
        @functools.wraps(body)
        def run(
            model: nn.Module,
            clean: ImageData,
            config=None,
            *,
            test: ImageData | None = None,
            backdoor=None,
            device: str | torch.device | None = None,
            callback: Callback | None = None,
            stop: StopFlag | None = None,
            resume: DefenseState | None = None,
            on_state: Callable[[DefenseState], None] | None = None,
        ) -> DefenseResult:
            config = (config if config is not None else config_cls()).validate()
            if len(clean) == 0:
                raise ValueError("the clean set is empty")
            dev = pick_device(device)
            h0 = frozen_copy(model, dev)
            before = full_eval(h0, test, backdoor, clean.info.num_classes, dev)
            return body(RunContext(name, config, clean, test, backdoor, dev, callback, stop,
                                   resume, on_state, h0, before))  # fmt: skip

        return run

    return wrap


def trainable_copy(h0: nn.Module) -> nn.Module:
    """A copy of the frozen ``h0`` whose parameters take gradients."""
    h = copy.deepcopy(h0)
    for p in h.parameters():
        p.requires_grad_(True)
    return h


def cross_entropy(model: nn.Module, x: Tensor, y: Tensor, train_mode: bool = False) -> Tensor:
    """The model's mean cross entropy on (x, y); BatchNorm in training mode when asked."""
    model.train(train_mode)
    try:
        return F.cross_entropy(model(x), y)
    finally:
        model.eval()
