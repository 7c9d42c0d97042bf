"""The two jobs end to end: plant a backdoor (train on poisoned data) and purify with SAU.

These glue data, attacks, models, training, SAU and checkpoints together; the CLI and the
dashboard call them. Nothing here prints: progress goes to the callback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .attacks import AttackSpec, BackdoorTest, PoisonedTrain, backdoor_test, poison_train
from .checkpoint import Checkpoint, save_checkpoint, write_json_atomic
from .data import ImageData, Split, clean_subset, dataset_options, load_dataset
from .defaults import recipe
from .defenses import DefenseResult, DefenseState, get_defense
from .defenses.sau import SAUConfig, default_sau_config
from .events import Callback, StopFlag, to_record
from .metrics import Evaluation, der
from .models import create_model
from .train import TrainConfig, TrainResult, TrainState, default_train_config, train

__all__ = [
    "ATTACK_ARCH",
    "DEMO",
    "AttackRun",
    "DataSpec",
    "DemoPreset",
    "TEACHING_PRESETS",
    "TeachingPreset",
    "attack_setup",
    "backdoor_for",
    "sidecar_data",
    "clean_set",
    "plant_backdoor",
    "landing_shares",
    "landing_summary",
    "run_caveats",
    "trigger_caveats",
    "sau_caveats",
    "train_caveats",
    "stored_train_caveats",
    "unknown_trigger_report",
    "purify_checkpoint",
    "write_import_outputs",
    "write_attack_outputs",
    "write_purify_outputs",
]


@dataclass(frozen=True)
class DataSpec:
    """How to load a data set again: its name, root and loader arguments (JSON-able)."""

    name: str = "digits"
    root: str | None = None
    kwargs: dict = field(default_factory=dict)  # e.g. {"resolution": 16, "seed": 0}

    def load(self, download: bool = False) -> Split:
        kwargs = dict(self.kwargs)
        if download:
            kwargs["download"] = True
        try:
            return load_dataset(self.name, self.root, **kwargs)
        except TypeError as err:  # an option of the wrong kind: a message, not a traceback
            raise ValueError(f"data set {self.name!r} cannot take the options {self.kwargs}: "
                             f"{err}") from None  # fmt: skip

    def to_dict(self) -> dict:
        return {"name": self.name, "root": self.root, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        """Inverse of :meth:`to_dict`; the options are checked against the data set's loader
        (:func:`~sau_core.data.dataset_options`): ValueError for anything else."""
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise ValueError("a data block needs at least a 'name' (text)")
        root = d.get("root")
        if root is not None and not isinstance(root, str):
            raise ValueError(f"a data block's 'root' must be a folder name, got {root!r}")
        return cls(d["name"], root, dataset_options(d["name"], d.get("kwargs", {})))


def sidecar_data(meta: dict) -> DataSpec | None:
    """The data set a checkpoint's sidecar names: its ``data`` block, else its geometry's name
    and parameters, with the data set's recipe (:mod:`sau_core.defaults`) for every option the
    sidecar leaves out (a minimal sidecar for digits means 16x16, as ``--help`` says). None when
    it names none; ValueError for options its loader does not take."""
    if isinstance(meta.get("data"), dict):
        d = meta["data"]
        name, root, kwargs = d.get("name"), d.get("root"), d.get("kwargs", {})
    elif isinstance(meta.get("dataset"), dict) and isinstance(meta["dataset"].get("name"), str):
        name, root, kwargs = meta["dataset"]["name"], None, meta["dataset"].get("params", {})
    else:
        return None
    spec = DataSpec.from_dict({"name": name, "root": root, "kwargs": kwargs})
    return DataSpec(spec.name, spec.root, {**recipe(spec.name).data, **spec.kwargs})


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
    meta = {k: v for k, v in source.meta.items()
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


# ----------------------------------------------------------------------------- demo preset
@dataclass(frozen=True)
class DemoPreset:
    """The embedded demo, chosen by measurement (bench/bench_demo_choice.py and
    bench/bench_sau_table.py; docs/results.md, "The demo setting").

    Digits upsampled to 16x16, ``wide_cnn`` (the small CNN's plan with a strided first conv and
    32-128 channels: on the small CNN SAU does not remove Blended, on this one it does, at
    about the same cost) trained with random crops (4-pixel padding, the CIFAR-10 recipe: without them
    the model's adversarial examples mostly land on class 8, not on the target, and SAU cannot
    reach the backdoor) and label smoothing 0.1 (without it the model is often so sure of its
    trigger class that SAU's loss has almost no gradient there: ``sau_core.defenses.sau.saturated_flags``),
    BadNets 10%, 30% clean data, SAU with the reference's settings except a batch of 64 (digits
    default) for 60 rounds.
    """

    data: DataSpec
    arch: str
    attack: AttackSpec
    train: TrainConfig
    clean_ratio: float
    sau: SAUConfig


DEMO = DemoPreset(
    data=DataSpec("digits", None, dict(recipe("digits").data)),
    arch=recipe("digits").arch,
    attack=AttackSpec("badnets", {}, target=0, poison_ratio=0.1, seed=0),
    train=default_train_config("digits"),
    clean_ratio=recipe("digits").clean_ratio,
    sau=default_sau_config("digits"),
)


# The model of each attack's ready-made checkpoint and lesson: the demo's, except where measured
# otherwise (bench/bench_sau_table.py, 2 threads, seeds 0-2): WaNet barely takes on wide_cnn
# trained with random crops (ASR 0.04-0.07 before SAU) and takes more on the small CNN (0.20-0.46).
ATTACK_ARCH: dict[str, str] = {"wanet": "small_cnn"}


def attack_setup(attack: str, base: DemoPreset = DEMO) -> DemoPreset:
    """``base`` with ``attack`` (its default parameters) on that attack's model (:data:`ATTACK_ARCH`,
    else ``base.arch``): the setting of the ready-made checkpoint of ``attack``."""
    return replace(
        base,
        arch=ATTACK_ARCH.get(attack, base.arch),
        attack=replace(base.attack, name=attack, params={}),
    )


@dataclass(frozen=True)
class TeachingPreset:
    """A named set-up for a lesson: the demo's data, training and SAU settings with one attack
    and a model (the ready-made checkpoint of that attack and model, when there is one, is
    exactly this; the dashboard trains the others in place)."""

    title: str  # what the dashboard shows
    help: str  # one line on what the lesson shows
    setup: DemoPreset


TEACHING_PRESETS: dict[str, TeachingPreset] = {
    "badnets": TeachingPreset(
        "BadNets on digits",
        "A visible 3x3 patch in the corner; SAU takes ASR from 1.00 to 0.00-0.02. Watch RA too: "
        "the purified model sends many patched images to class 1, not to their own (RA 0.36-0.37).",
        DEMO,
    ),
    "blended": TeachingPreset(
        "Blended on digits",
        "A noise key mixed into the whole picture, invisible at a glance; SAU removes it "
        "(ASR 1.00 -> 0.00).",
        attack_setup("blended"),
    ),
    "sig": TeachingPreset(
        "clean-label SIG",
        "Only target-class images are poisoned and keep their true label; the trigger is a faint "
        "sinusoid over the whole image. SAU removes it (ASR 0.94 -> 0.00) and ACC goes up.",
        attack_setup("sig"),
    ),
    "wanet": TeachingPreset(
        "invisible WaNet",
        "A slight warp of the image that the eye does not see; on digits trained with random "
        "crops the attack only partly takes (ASR about 0.2, on the small CNN where it takes "
        "most), and SAU removes what there is.",
        attack_setup("wanet"),
    ),
    "blended_small": TeachingPreset(
        "Blended on the small CNN: where SAU is weak",
        "The Blended lesson on the narrower small CNN (16-32 channels against 32-128). "
        "SAU's search for shared examples stops reaching the trigger after a few rounds and ASR "
        "comes back (0.2-0.5 after 60 rounds, three seeds). No ready-made model: it trains in "
        "place first.",
        replace(attack_setup("blended"), arch="small_cnn"),
    ),
    "blended_resnet": TeachingPreset(
        "Blended on a ResNet (slow on a CPU)",
        "The Blended lesson on PreAct-ResNet10, the family of the SAU paper's model: gone within "
        "a few rounds (ASR 1.00 -> 0.00), at 10x the small CNN's compute. No ready-made model: "
        "it trains in place first (docs/results.md gives the times measured on a 2-core CPU).",
        replace(attack_setup("blended"), arch="preact_resnet10"),
    ),
}


# Settings where SAU is measured to be weak (bench/bench_demo_choice.py, bench/bench_sau_table.py;
# figures on this project's 2-core CPU, digits 16x16, 10% poisoning, target 0, seeds 0-2):
# attack -> (the models it was measured weak on, the note).
_WEAK_ON_DIGITS: dict[str, tuple[tuple[str, ...], str]] = {
    "blended": (
        ("small_cnn",),
        "Blended on digits with the small CNN: ASR falls to about 0.2 within five rounds, then "
        "comes back as ACC recovers and ends at 0.2 to 0.5 after 60 rounds (three seeds). The "
        "chart 'Where the examples that fool h0 land' shows why: after about round 5 SAU's "
        "search for shared examples no longer lands on the target, so nothing pushes against "
        "the backdoor. With the demo's wide_cnn (2.4x the compute) or preact_resnet10 (10x) "
        "the same setting removes it (ASR 1.00 -> 0.00-0.01, three seeds).",
    ),
    "wanet": (
        ("small_cnn", "wide_cnn", "preact_resnet10"),
        "WaNet on digits: the attack only partly takes on a model trained with random crops "
        "(ASR 0.03 to 0.46 before SAU), so there is less for SAU to remove.",
    ),
}


# Measured (bench/bench_clean_ratio.py: the ready-made digits models, the digits defaults
# otherwise: 60 rounds, batch 64, 2 threads): ASR after SAU per clean ratio, (BadNets, Blended).
# The default, 30%, gives 0.000 and 0.002 (torch 2.15; docs/results/clean_ratio.md).
_DIGITS_CLEAN = {0.05: (0.70, 0.09), 0.1: (0.55, 0.06), 0.2: (0.08, 0.01)}


def sau_caveats(
    data: DataSpec | dict,
    clean_size: int,
    config: SAUConfig,
    attack: str | None = None,
    arch: str | None = None,
    *,
    clean_ratio: float | None = None,
) -> list[str]:
    """Plain-words warnings for settings where SAU is known (measured) to be weak; [] if none.

    ``arch`` None means the demo's model; an attack's note applies only to the models it was
    measured on (:data:`_WEAK_ON_DIGITS`). ``clean_ratio``: the defender's share, checked
    against what was measured on digits."""
    d = data.to_dict() if isinstance(data, DataSpec) else dict(data)
    notes = []
    if d.get("name") == "digits":
        if int(d.get("kwargs", {}).get("resolution", 8)) == 8:
            notes.append(
                "Digits at their native 8x8: SAU does not remove a backdoor here (measured with "
                "the authors' code and ours: ASR stays above 0.8 with 5 to 50% clean data). "
                "Use 16x16 or 32x32."
            )
        weak = _WEAK_ON_DIGITS.get(attack or "")
        if weak is not None and (arch or DEMO.arch) in weak[0]:
            notes.append(weak[1])
        default = recipe("digits").clean_ratio
        if clean_ratio is not None and clean_ratio < default:
            figures = "; ".join(f"{r:.0%} clean: BadNets {b:.2f}, Blended {bl:.2f}"
                                for r, (b, bl) in _DIGITS_CLEAN.items())  # fmt: skip
            notes.append(
                f"A clean set of {clean_ratio:.0%} of the training images is small for digits. "
                "Measured on the ready-made models with the other defaults (ASR after SAU, "
                f"from 1.00): {figures}; the default {default:.0%} gives 0.00 and 0.00."
            )
    if 0 < clean_size < config.batch_size:
        notes.append(
            f"The batch ({config.batch_size}) is larger than the clean set ({clean_size} images): "
            "each round makes a single update, so SAU needs many more rounds."
        )
    return notes


def train_caveats(data: DataSpec | dict, config: TrainConfig) -> list[str]:
    """Plain-words warnings for training settings that were measured to leave SAU without a
    grip on digits (docs/results.md, "The demo setting"); [] elsewhere or when none applies."""
    d = data.to_dict() if isinstance(data, DataSpec) else dict(data)
    if d.get("name") != "digits":
        return []
    notes = []
    if config.augment in ("auto", "none"):
        notes.append(
            "Trained without random crops: on digits such models send most of their "
            "adversarial examples to one class that is not the target (class 8), so SAU's "
            "search misses the backdoor (measured: ASR 0.995 -> 0.975 after SAU at 16x16). The "
            "digits default trains with crops (--augment crop --crop-pad 4)."
        )
    if config.label_smoothing == 0:
        notes.append(
            "Trained without label smoothing: on digits 8 such Blended models had 85% or more "
            "of their adversarial examples saturated (so sure that SAU's loss has almost no "
            "gradient), and 3 of them kept ASR at 0.98 or more through 60 rounds. The digits "
            "default uses --label-smoothing 0.1."
        )
    return notes


def stored_train_caveats(meta: dict, data: DataSpec | dict) -> list[str]:
    """:func:`train_caveats` for a checkpoint, from its sidecar's ``train`` block ([] when it has
    none, e.g. a model imported from elsewhere, or one of another version)."""
    block = meta.get("train")
    if not isinstance(block, dict):
        return []
    try:
        return train_caveats(data, TrainConfig(**block))
    except (TypeError, ValueError):
        return []


def _record(rnd) -> dict:
    """A round record as a dict: SAURound events and the dicts a run directory keeps alike."""
    return rnd if isinstance(rnd, dict) else to_record(rnd)


# Measured (bench/bench_sau_table.py, bench/bench_demo_choice.py; digits 16x16, small CNN, no
# label smoothing): 8 Blended models had 85% or more of their adversarial examples saturated;
# 3 of them kept ASR >= 0.98 through 60 rounds, the others ended at 0.18-0.52. With label
# smoothing 0.1 (the demo's training) no model had any, on the small CNN or on wide_cnn.
SATURATION_WARNING = 0.5


# Measured (docs/results.md, the choice table; shares before SAU): digits models whose
# adversarial examples landed 14-16% on the target kept ASR at 0.84-0.98 after SAU; clean-label
# SIG models at 18-25% were cleaned, BadNets and Blended models at 38-92% mostly were.
LANDING_WARNING = 0.2


def run_caveats(rounds: list, target: int | None = None) -> list[str]:
    """Plain-words warnings read from a run's own round records (SAURound or their dicts).

    A saturated backdoored model: when h is so sure of h0's adversarial class that the mass on
    every other class is under a millionth, SAU's unlearning loss (as the authors write it) has
    almost no gradient there (:func:`sau_core.defenses.sau.saturated_flags`). And, when the all-to-one
    ``target`` is known, a search that misses it: under :data:`LANDING_WARNING` of round 1's
    examples that fool h0 land on the target.
    """
    if not rounds:
        return []
    notes = []
    shares = landing_shares(rounds[:1])
    if target is not None and shares and 0 <= target < len(shares[0][1]):
        first_shares = shares[0][1]
        if first_shares[target] < LANDING_WARNING:
            top = max(range(len(first_shares)), key=first_shares.__getitem__)
            notes.append(
                f"SAU's search barely reaches the backdoor: in round 1 only "
                f"{first_shares[target]:.0%} of the examples that fool h0 land on the target, "
                f"class {target} (class {top} takes {first_shares[top]:.0%}). SAU can only unlearn "
                "what its examples reach: on digits, models with 14-16% there kept ASR at "
                "0.84-0.98 after SAU (trained without random crops, or with 2-pixel ones), while "
                "SIG models with 18-25% were cleaned."
            )
    first = _record(rounds[0])
    acting = int(first.get("potential_poison") or 0)
    saturated = int(first.get("saturated") or 0)
    if acting == 0 or saturated / acting < SATURATION_WARNING:
        return notes
    return notes + [
        f"The backdoored model is saturated: on {saturated} of the {acting} adversarial examples "
        "SAU unlearned in round 1, it puts all but a millionth of its probability on one class. "
        "There SAU's unlearning loss (as in the authors' code) has almost no gradient, so the "
        "backdoor may stay: on digits, 3 of 8 such models kept ASR at 0.98 or more. Models "
        "trained with label smoothing (a training setting on the Set up page, "
        "`--label-smoothing` in the CLI) do not saturate."
    ]


# Measured (one-off checks, digits 16x16, the demo's settings): a clean wide_cnn (no poisoning)
# pulls at most 11% of the triggered test images to any one class (Blended's noise key to class 8;
# BadNets, SIG and WaNet at most 1.4%), while the purified ready-made models pull 70% (BadNets,
# to class 1) and 65% (SIG, to class 9); purified Blended at most 2.5%.
TRIGGER_PULL_WARNING = 0.3


def trigger_caveats(after: Evaluation | dict | None) -> list[str]:
    """Plain-words warning when, after SAU, the trigger still steers the model to another class.

    ``after`` is the purified model's full evaluation (an :class:`Evaluation` or a ``metrics.json``
    block); its off-target pull (:func:`sau_core.metrics.off_target_pull`) at or above
    :data:`TRIGGER_PULL_WARNING` for some class gives one note. [] when there is none, or no
    trigger is known, or the block predates the measure.
    """
    if after is None:
        return []
    pull = after.off_target if isinstance(after, Evaluation) else after.get("off_target")
    if not pull:
        return []
    cls, share = max(((int(c), float(v)) for c, v in pull.items()), key=lambda cv: cv[1])
    if share < TRIGGER_PULL_WARNING:
        return []
    return [
        f"The trigger still steers the purified model, now towards class {cls}: it sends "
        f"{share:.0%} of the triggered test images that are not of class {cls} there. ASR "
        "counts only the attack's target, so it misses this; RA (triggered images given their "
        "own class) shows it. On digits a clean model sends at most 11% of them to one class."
    ]


def landing_shares(rounds: list) -> list[tuple[int, list[float]]]:
    """Per round that has the counts (``SAURound.adv_classes``, records or their dicts):
    ``(round, share of the examples SAU unlearns that h0 puts in each class)``. Rounds without
    counts (runs from before they were recorded) or with none to share are left out."""
    out = []
    for r in map(_record, rounds):
        counts = r.get("adv_classes")
        total = sum(counts) if counts else 0
        if total:
            out.append((r["round"], [c / total for c in counts]))
    return out


def landing_summary(rounds: list) -> str | None:
    """One line on where the examples SAU unlearns land (h0's class for them, see
    ``SAURound.adv_classes``): the class that takes most of them in round 1, and its share then
    and in the last round. A backdoored model's examples crowd into its target, so with an
    unknown trigger this names the suspect; with a known one it shows whether SAU's search
    still reaches the backdoor at the end. None when the rounds have no counts."""
    shares = landing_shares(rounds)
    if not shares:
        return None
    (r1, first), (rn, last) = shares[0], shares[-1]
    top = max(range(len(first)), key=first.__getitem__)
    line = (
        f"h0's adversarial examples land most on class {top}: {first[top]:.0%} of them in "
        f"round {r1}"
    )
    if len(shares) > 1:
        line += f", {last[top]:.0%} in round {rn}"
    return line


def unknown_trigger_report(rounds: list) -> list[str]:
    """Plain words for a run whose trigger is unknown: what was and was not measured, and the
    evidence there is, where h0's adversarial examples land (the suspected target, its share
    against an even spread, the runners-up, and the shares in the first, middle and last round).
    """
    lines = [
        "Measured: ACC before and after, and where the backdoored model h0's adversarial "
        "examples land each round. Not measured: ASR, RA and per-class ASR, which need the "
        "trigger (name it to measure them)."
    ]
    shares = landing_shares(rounds)
    if not shares:
        lines.append("No landing counts were recorded, so there is no suspect either.")
        return lines
    r1, first = shares[0]
    order = sorted(range(len(first)), key=lambda c: -first[c])
    top = order[0]
    rest = ", ".join(f"class {c} {first[c]:.0%}" for c in order[1:3] if first[c] > 0)
    lines.append(
        f"Suspected target: class {top}, which takes {first[top]:.0%} of the examples that fool "
        f"h0 in round {r1} (an even spread would give {1 / len(first):.0%} each)"
        + (f"; next: {rest}." if rest else ".")
        + " A backdoor's target attracts them, but a clean model's also favour some classes: "
        "a lead to check with the trigger, not a proof."
    )
    picks = sorted({0, len(shares) // 2, len(shares) - 1})
    by_round = "; ".join(
        f"round {shares[i][0]}: " + ", ".join(
            f"{c} {shares[i][1][c]:.0%}" for c in sorted(range(len(first)),
                                                         key=lambda c: -shares[i][1][c])[:3])
        for i in picks
    )  # fmt: skip
    lines.append(f"Where they land (top three classes): {by_round}.")
    return lines
