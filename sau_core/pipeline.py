"""The two jobs end to end: plant a backdoor (train on poisoned data) and purify with SAU.

These glue data, attacks, models, training, SAU and checkpoints together; the CLI and the
dashboard call them. Nothing here prints: progress goes to the callback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .attacks import (
    AttackSpec,
    BackdoorTest,
    PoisonedTrain,
    backdoor_test,
    poison_train,
    prepare_spec,
)
from .data import DataSpec, ImageData, Split, clean_subset
from .defenses import DefenseResult, DefenseState, get_defense
from .events import Callback, StopFlag, to_record
from .io.atomic import write_json_atomic
from .io.checkpoint import Checkpoint, save_checkpoint
from .metrics import Evaluation, der
from .models import create_model
from .train import TrainConfig, TrainResult, TrainState, default_train_config, train

__all__ = [
    "AttackRun",
    "backdoor_for",
    "clean_set",
    "plant_backdoor",
    "purify_checkpoint",
    "write_import_outputs",
    "write_attack_outputs",
    "write_purify_outputs",
]


@dataclass
class AttackRun:
    model: torch.nn.Module
    split: Split
    spec: AttackSpec
    poisoned: PoisonedTrain
    backdoor: BackdoorTest
    result: TrainResult
    evaluation: Evaluation


def backdoor_for(split: Split, spec: AttackSpec | None) -> BackdoorTest | None:
    return None if spec is None else backdoor_test(split.test, spec)


def plant_backdoor(
    split: Split,
    spec: AttackSpec,
    arch: str = "small_cnn",
    config: TrainConfig | None = None,
    *,
    device: str | torch.device | None = None,
    callback: Callback | None = None,
    stop: StopFlag | None = None,
    resume: TrainState | None = None,
    on_state: Callable[[TrainState], None] | None = None,
) -> AttackRun:
    """Poison the training set with ``spec`` and train ``arch`` on it; measure ACC/ASR/RA.

    ``resume``/``on_state``: continue from (and keep) the training's state after each epoch
    (:func:`~sau_core.train.train`); the poisoning is redone from its seed."""
    spec.validate(split.info)
    spec = prepare_spec(spec, split.train)  # LF computes its pattern here, once
    config = config or default_train_config(split.info.name)
    poisoned = poison_train(split.train, spec)
    bd = backdoor_test(split.test, spec)
    model = create_model(arch, split.info, seed=config.seed)
    result = train(
        model,
        poisoned.data,
        config,
        device=device,
        eval_set=(split.test.x, split.test.y),
        backdoor=bd,
        callback=callback,
        stop=stop,
        resume=resume,
        on_state=on_state,
    )
    return AttackRun(model, split, spec, poisoned, bd, result, result.final)


def clean_set(
    split: Split, ratio: float = 0.05, *, seed: int = 0, balanced: bool = False
) -> ImageData:
    """The defender's clean data: ``ratio`` of the un-poisoned training set (true labels)."""
    return split.train.subset(clean_subset(split.train, ratio, seed=seed, balanced=balanced))


def purify_checkpoint(
    checkpoint: Checkpoint,
    split: Split,
    config=None,
    *,
    defense: str = "sau",
    clean_ratio: float = 0.05,
    clean_seed: int = 0,
    balanced: bool = False,
    spec: AttackSpec | None = None,
    device: str | torch.device | None = None,
    callback: Callback | None = None,
    stop: StopFlag | None = None,
    resume: DefenseState | None = None,
    on_state=None,
) -> DefenseResult:
    """Run ``defense`` (a name in :data:`~sau_core.defenses.DEFENSES`, SAU by default) on a loaded
    checkpoint; ``config`` None takes the data set's defaults; ``spec`` (the trigger) is optional.

    ``resume`` and ``on_state``: see :func:`~sau_core.defenses.sau.purify` (continue an
    interrupted run; receive the state after every completed round). ValueError for a config of
    another defence, or a model the defence cannot run on.
    """
    entry = get_defense(defense)
    if config is None:
        config = entry.default_config(split.info.name)
    if not isinstance(config, entry.config):
        raise ValueError(f"{entry.title} takes a {entry.config.__name__}, got "
                         f"{type(config).__name__}")  # fmt: skip
    if entry.check_model is not None:
        entry.check_model(checkpoint.model)
    clean = clean_set(split, clean_ratio, seed=clean_seed, balanced=balanced)
    if spec is not None:
        spec.validate(split.info)
    return entry.run(
        checkpoint.model,
        clean,
        config,
        test=split.test,
        backdoor=backdoor_for(split, spec),
        device=device,
        callback=callback,
        stop=stop,
        resume=resume,
        on_state=on_state,
    )


# ------------------------------------------------------------------------------- outputs
def write_attack_outputs(
    out: str | Path, run: AttackRun, data: DataSpec, config: TrainConfig
) -> dict:
    """Checkpoint (weights + sidecar) and ``metrics.json`` into ``out``; returns the metrics."""
    out = Path(out)
    ev = run.evaluation
    metrics = {
        "acc": ev.acc,
        "asr": ev.asr,
        "ra": ev.ra,
        "per_class_asr": ev.to_dict()["per_class_asr"],
        "confusion": ev.confusion,
        "train_seconds": run.result.elapsed,
        "images_per_s": run.result.images_per_s,
        "stopped": run.result.stopped,
        "config": {
            "data": data.to_dict(),
            "model": run.model.arch,
            "attack": run.spec.to_dict(),
            "train": config.to_dict(),
            "poisoned": len(run.poisoned.poison_idx),
            "cross": len(run.poisoned.cross_idx),
        },
    }
    save_checkpoint(
        out,
        run.model,
        {
            "data": data.to_dict(),
            "attack": run.spec.to_dict(),
            "seed": config.seed,
            "train": config.to_dict(),
            "metrics": {k: metrics[k] for k in ("acc", "asr", "ra", "per_class_asr")},
        },
    )
    write_json_atomic(out / "metrics.json", metrics)
    return metrics


def write_purify_outputs(
    out: str | Path,
    result: DefenseResult,
    source: Checkpoint,
    *,
    clean_ratio: float,
    clean_seed: int,
    spec: AttackSpec | None,
) -> dict:
    """Defended checkpoint, ``metrics.json`` (the defence, before/after, DER, its settings and
    notes) and ``history.jsonl`` (its round records)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def block(e: Evaluation) -> dict:
        d = e.to_dict(confusion=False)
        return {k: d[k] for k in ("acc", "asr", "ra", "per_class_asr", "off_target")}

    settings = result.config.to_dict()
    metrics = {
        "defense": result.defense,
        "before": block(result.before),
        "after": block(result.after),
        "der": None if spec is None else der(result.before, result.after),
        "rounds_done": result.rounds_done,
        "stopped": result.stopped,
        "seconds": result.elapsed,
        "device": result.device,
        "notes": result.notes,
        "config": {
            "defense": result.defense,
            "settings": settings,
            "clean_ratio": clean_ratio,
            "clean_seed": clean_seed,
            "attack": None if spec is None else spec.to_dict(),
            "source": str(source.path),
        },
    }
    if result.defense == "sau":  # the key SAU's outputs have always had
        metrics["config"]["sau"] = settings
    meta = {k: v for k, v in source.sidecar.to_dict().items()
            if k not in ("versions", "created", "format", "sau", "defense")}  # fmt: skip
    meta.update({"purified_from": str(source.path),
                 "defense": {"name": result.defense, "settings": settings}})  # fmt: skip
    if result.defense == "sau":
        meta["sau"] = settings
    if spec is not None:  # the trigger this run measured (it may differ from the source's)
        meta["attack"] = spec.to_dict()
    meta["metrics"] = metrics["after"]
    save_checkpoint(out, result.model, meta)
    write_json_atomic(out / "metrics.json", metrics)
    lines = [json.dumps(to_record(r)) for r in result.history]
    (out / "history.jsonl").write_text("\n".join(lines) + ("\n" if lines else ""))
    return metrics


def write_import_outputs(
    out: str | Path,
    model: torch.nn.Module,
    data: DataSpec,
    spec: AttackSpec | None,
    evaluation: Evaluation,
    source: str,
) -> dict:
    """A model made elsewhere as a checkpoint directory that needs no flags: its weights as
    safetensors, a sidecar naming its architecture, data set and trigger (when known), and
    ``metrics.json`` (ACC, and ASR/RA/per-class ASR with the trigger); returns the metrics."""
    d = evaluation.to_dict(confusion=False)
    metrics = {k: d[k] for k in ("acc", "asr", "ra", "per_class_asr")}
    save_checkpoint(out, model, {
        "data": data.to_dict(),
        "attack": None if spec is None else spec.to_dict(),
        "metrics": metrics,
        "imported_from": str(source)[:200],
    })  # fmt: skip
    write_json_atomic(Path(out) / "metrics.json", metrics)
    return metrics
