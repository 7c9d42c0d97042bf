"""One set of defaults per data set, shared by the CLI, the dashboard and the job runner.

A :class:`Recipe` says, for one data set, which model ``sau attack`` trains, how it trains it,
how many clean images the defender holds, and which SAU settings differ from the reference's.
:func:`~sau_core.train.default_train_config` and :func:`~sau_core.defenses.sau.default_sau_config` read it,
the CLI's ``--help`` prints it, and the dashboard's forms start from it, so the same data set gets
the same numbers wherever a run starts. Plain dicts and no torch, so ``sau --help`` stays fast.

Digits' recipe is the embedded demo (:data:`sau_core.lab.presets.DEMO`), chosen by measurement
(docs/results.md, "The demo setting"): ``sau attack --dataset digits`` then ``sau purify`` with no
other flag plant and remove a BadNets backdoor. The other data sets keep the SAU paper's
settings (5% clean data, the reference's SAU) and BackdoorBench's models; they were not tuned
here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["GENERIC", "RECIPES", "Recipe", "default_value", "recipe"]


@dataclass(frozen=True)
class Recipe:
    """The defaults of one data set (every dict holds overrides of a config's own defaults)."""

    arch: str  # the model `sau attack` trains when --model is not given
    data: dict = field(default_factory=dict)  # loader arguments, e.g. digits' resolution
    train: dict = field(default_factory=dict)  # TrainConfig fields that differ from its defaults
    sau: dict = field(default_factory=dict)  # SAUConfig fields that differ from the reference
    clean_ratio: float = 0.05  # the defender's share of the training set (the paper: 5%)
    why: str = ""  # one line on where these numbers come from
    defenses: dict = field(default_factory=dict)  # per defence (not SAU): settings that differ

    def defense(self, name: str) -> dict:
        """The settings of defence ``name`` that differ from its paper's on this data set."""
        return dict(self.sau) if name == "sau" else dict(self.defenses.get(name, {}))


RECIPES: dict[str, Recipe] = {
    "digits": Recipe(
        arch="wide_cnn",
        data={"resolution": 16, "seed": 0},
        train={
            "epochs": 30,
            "batch_size": 64,
            "lr": 0.05,
            "augment": "crop",
            "crop_pad": 4,
            "label_smoothing": 0.1,
        },  # fmt: skip
        sau={"batch_size": 64, "rounds": 60},
        clean_ratio=0.3,
        # the fine-tuning family as the model was trained (crops) and with SAU's batch of 64:
        # the clean set holds 404 images, so batches of 256 make two steps a round
        # (bench/bench_defenses.py; docs/results/defenses.md)
        defenses={name: {"batch_size": 64, "augment": "crop"} for name in ("ft", "fp", "nad")},
        why="the embedded demo: measured to plant and remove BadNets and Blended on digits",
    ),
    "mnist": Recipe(arch="small_cnn", train={"epochs": 10, "batch_size": 128, "lr": 0.01}),
    "cifar10": Recipe(
        arch="preact_resnet18",
        train={"epochs": 100, "batch_size": 128, "lr": 0.01},
        why="the SAU paper's setting (PreAct-ResNet18, 5% clean data, the reference's SAU)",
    ),
    "gtsrb": Recipe(
        arch="preact_resnet18",
        train={"epochs": 50, "batch_size": 128, "lr": 0.01, "augment": "crop"},
    ),
}

# Data sets without a recipe (imagefolder, new registrations): the configs' own defaults.
GENERIC = Recipe(arch="small_cnn")


def recipe(dataset: str | None) -> Recipe:
    """The defaults of ``dataset`` (:data:`GENERIC` for one without a recipe)."""
    return RECIPES.get(str(dataset), GENERIC)


def _show(value) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:g}"


def default_value(part: str, name: str = "", fallback=None) -> str:
    """How ``--help`` shows a default that depends on the data set: ``"64 on digits, 128 on
    mnist/cifar10/gtsrb, 128 on others"`` grouped by value, or just the value when every data
    set agrees.

    ``part``: "train" or "sau" (with the field ``name`` and the config's own default
    ``fallback``, which data sets without a recipe get), or "arch" or "clean_ratio".
    """
    by_value: dict[str, list[str]] = {}
    for ds, r in [*RECIPES.items(), ("others", GENERIC)]:
        v = (
            getattr(r, part)
            if part in ("arch", "clean_ratio")
            else getattr(r, part).get(name, fallback)
        )
        by_value.setdefault(_show(v), []).append(ds)
    if len(by_value) == 1:
        return next(iter(by_value))
    return ", ".join(f"{v} on {'/'.join(names)}" for v, names in by_value.items())
