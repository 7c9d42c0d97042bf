"""A sweep's grid: data set x models x attacks x defences x seeds, from flags or a TOML file,
checked as a whole before anything runs (every problem listed, not the first)."""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

# --quick: a smoke-test size (digits 8x8, one epoch, two rounds)
QUICK = {"resolution": 8, "epochs": 1, "rounds": 2}
KEYS = ("dataset", "resolution", "models", "attacks", "defenses", "seeds", "epochs", "rounds",
        "settings", "paper", "data_root")  # fmt: skip
# the model name that stands for each attack's own: the model of its ready-made checkpoint
DEFAULT_MODEL = "default"


def default_model(dataset: str, attack: str) -> str:
    """The model a grid's ``"default"`` means for ``attack``: on digits, that of the attack's
    ready-made checkpoint (wide_cnn; the small CNN for WaNet, on which it takes); elsewhere the
    data set's (:mod:`sau_core.lab.recipes`)."""
    from ..lab.presets import ATTACK_ARCH
    from ..lab.recipes import recipe

    arch = recipe(dataset).arch
    return ATTACK_ARCH.get(attack, arch) if dataset == "digits" else arch


@dataclass(frozen=True)
class Cell:
    """One run of the grid: the backdoored model (dataset, model, attack, seed) and a defence."""

    dataset: str
    model: str
    attack: str
    defense: str
    seed: int

    @property
    def plant_key(self) -> str:
        """The backdoored model's name: cells that differ only in the defence share it."""
        return f"{self.dataset}-{self.model}-{self.attack}-s{self.seed}"

    @property
    def key(self) -> str:
        return f"{self.plant_key}-{self.defense}"


@dataclass(frozen=True)
class Grid:
    """The grid. ``models``: names, or ``"default"`` for each attack's own (:func:`default_model`);
    ``resolution``: digits' image side (other data sets ignore it); ``epochs`` and ``rounds``:
    the training epochs and every defence's rounds (None: the data set's defaults);
    ``settings``: per defence, settings over its defaults (``{"anp": {"rounds": 500}}``);
    ``paper``: each defence with its paper's settings instead of the data set's."""

    dataset: str = "digits"
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    attacks: tuple[str, ...] = ("badnets",)
    defenses: tuple[str, ...] = ("sau",)
    seeds: tuple[int, ...] = (0,)
    resolution: int | None = None
    epochs: int | None = None
    rounds: int | None = None
    settings: dict = field(default_factory=dict, hash=False)
    paper: bool = False
    data_root: str | None = field(default=None, compare=False)  # data sets other than digits

    def __post_init__(self) -> None:
        # the grid's own copy: a caller's dict changed later cannot change a checked grid
        if isinstance(self.settings, dict):
            object.__setattr__(self, "settings", copy.deepcopy(self.settings))

    def cells(self) -> list[Cell]:
        out = []
        for m, a, s, d in itertools.product(self.models, self.attacks, self.seeds, self.defenses):
            arch = default_model(self.dataset, a) if m == DEFAULT_MODEL else m
            out.append(Cell(self.dataset, arch, a, d, s))
        return list(dict.fromkeys(out))  # "default" beside its own name: one cell

    def defense_config(self, name: str, seed: int = 0):
        """The config a cell of defence ``name`` runs with: the data set's defaults (the paper's
        with ``paper``), the grid's rounds, its settings for ``name``, the cell's seed;
        ValueError names a bad setting."""
        from ..defenses import get_defense

        entry = get_defense(name)
        base = (
            entry.config().to_dict() if self.paper else entry.default_config(self.dataset).to_dict()
        )
        own = self.settings.get(name, {})
        merged = {**base, **({"rounds": self.rounds} if self.rounds else {}), **own,
                  "seed": seed}  # fmt: skip
        # a defence whose first phase has rounds of its own (NAD's teacher) gets half of its
        # rounds for it when its default would not fit (a short grid: --quick's 2 rounds),
        # unless that phase's rounds are set
        teacher = merged.get("teacher_rounds")
        if ("teacher_rounds" not in own and teacher is not None
                and _is_int(merged.get("rounds")) and teacher >= merged["rounds"]):  # fmt: skip
            merged["teacher_rounds"] = max(1, merged["rounds"] // 2)
        return entry.config.from_dict(merged)

    def problems(self) -> list[str]:
        """Every problem of the grid (empty: it can run); nothing is loaded or trained."""
        from ..attacks import ATTACKS
        from ..data import DATASETS
        from ..defenses import DEFENSES
        from ..models import MODELS

        out = []
        if self.dataset not in DATASETS:
            out.append(f"dataset: unknown {self.dataset!r}; choose from {', '.join(DATASETS)}")
        models = {**MODELS, DEFAULT_MODEL: None}
        for what, names, known in (("models", self.models, models), ("attacks", self.attacks, ATTACKS),
                                   ("defenses", self.defenses, DEFENSES)):  # fmt: skip
            if not names:
                out.append(f"{what}: give at least one")
            bad = [n for n in names if n not in known]
            if bad:
                out.append(f"{what}: unknown {', '.join(map(repr, bad))}; choose from "
                           f"{', '.join(sorted(known))}")  # fmt: skip
            if len(set(names)) != len(names):
                out.append(f"{what}: a name is given twice")
        if "custom" in self.attacks:
            out.append("attacks: 'custom' needs a trigger image, which a sweep does not take")
        if not self.seeds:
            out.append("seeds: give at least one")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                out.append(f"seeds: {s!r} is not a non-negative integer")
        for name, value, lo, hi in (("resolution", self.resolution, 4, 64),
                                    ("epochs", self.epochs, 1, 1000),
                                    ("rounds", self.rounds, 1, 10000)):  # fmt: skip
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not lo <= value <= hi):  # fmt: skip
                out.append(f"{name}: {value!r} must be an integer from {lo} to {hi}")
        nad = self.settings.get("nad") if isinstance(self.settings, dict) else None
        nad_rounds = nad.get("rounds", self.rounds) if isinstance(nad, dict) else self.rounds
        if nad_rounds == 1 and "nad" in self.defenses:
            where = "settings.nad.rounds" if isinstance(nad, dict) and "rounds" in nad else "rounds"
            out.append(f"{where}: NAD needs at least 2 (teacher rounds, then the student's)")
        if not isinstance(self.paper, bool):
            out.append(f"paper: expected true or false, got {self.paper!r}")
        # a defence's config is built to check its settings only when the rest lets it be
        buildable = (isinstance(self.paper, bool) and self.dataset in DATASETS
                     and (self.rounds is None or _is_int(self.rounds)))  # fmt: skip
        out += self._settings_problems(DEFENSES, buildable)
        return out

    def _settings_problems(self, known, buildable: bool) -> list[str]:
        if not isinstance(self.settings, dict):
            return [f"settings: expected a table of defences, got {self.settings!r:.60}"]
        out = []
        for name, values in self.settings.items():
            if name not in known:
                out.append(
                    f"settings: unknown defence {name!r}; choose from {', '.join(sorted(known))}"
                )
            elif name not in self.defenses:
                out.append(f"settings: {name!r} is not among the grid's defenses "
                           f"({', '.join(self.defenses)})")  # fmt: skip
            elif not isinstance(values, dict):
                out.append(f"settings.{name}: expected a table of KEY = VALUE, got {values!r:.60}")
            elif "seed" in values:
                out.append(f"settings.{name}.seed: the seeds come from the grid's seeds")
            elif not buildable:
                continue  # the problem is reported above
            else:
                try:
                    self.defense_config(name)
                except (ValueError, TypeError) as err:
                    out.append(f"settings.{name}: {err}")
        return out

    def check(self) -> Grid:
        problems = self.problems()
        if problems:
            raise ValueError("the grid cannot run:\n  " + "\n  ".join(problems))
        return self

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "resolution": self.resolution,
                "models": list(self.models), "attacks": list(self.attacks),
                "defenses": list(self.defenses), "seeds": list(self.seeds),
                "epochs": self.epochs, "rounds": self.rounds,
                "settings": self.settings, "paper": self.paper,
                "data_root": self.data_root}  # fmt: skip


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _names(value, what: str, problems: list[str]) -> tuple:
    if isinstance(value, str):
        value = re.split(r"[,\s]+", value.strip())
    if not isinstance(value, list):
        problems.append(f"{what}: expected a list, got {type(value).__name__}")
        return ()
    return tuple(value)


def grid_from_dict(d: dict) -> Grid:
    """A grid from a dict (a TOML file's table); ValueError listing every problem."""
    if not isinstance(d, dict):
        raise ValueError(f"a grid must be a table of keys ({', '.join(KEYS)}), not {d!r:.60}")
    problems = []
    unknown = sorted(set(d) - set(KEYS))
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}; a grid takes {', '.join(KEYS)}")
    kw: dict = {}
    for key in ("models", "attacks", "defenses", "seeds"):
        if key in d:
            kw[key] = _names(d[key], key, problems)
    for key in ("dataset", "resolution", "epochs", "rounds", "settings", "paper", "data_root"):
        if key in d:
            kw[key] = d[key]
    if "dataset" in kw and not isinstance(kw["dataset"], str):
        problems.append(f"dataset: expected a name, got {kw.pop('dataset')!r}")
    grid = Grid(**kw)
    problems += grid.problems()
    if problems:
        raise ValueError("the grid cannot run:\n  " + "\n  ".join(problems))
    return grid


def settings_from_items(items: list[str]) -> dict:
    """``["anp.rounds=500", "ft.augment=crop"]`` -> ``{"anp": {"rounds": 500}, "ft": {...}}``
    (a value is read as JSON, else kept as a word); ValueError names a malformed item."""
    import json

    out: dict[str, dict] = {}
    given: dict[tuple, str] = {}
    for item in items:
        name, dot, rest = item.partition(".")
        key, eq, raw = rest.partition("=")
        if not (dot and eq and name.strip() and key.strip()):
            raise ValueError(f"--set {item!r}: expected DEFENCE.KEY=VALUE, e.g. anp.rounds=500")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        name, key = name.strip(), key.strip().replace("-", "_")
        if (name, key) in given:
            raise ValueError(f"--set {item!r}: {name}.{key} is already set by "
                             f"--set {given[name, key]!r}; give it once")  # fmt: skip
        given[name, key] = item
        out.setdefault(name, {})[key] = value
    return out


def grid_from_toml(path: str | Path) -> Grid:
    """A grid from a TOML file (its keys at the top level or under ``[grid]``)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ValueError("reading a TOML grid needs Python 3.11 or the tomli package; "
                             "give the grid as flags instead") from None  # fmt: skip
    try:
        d = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read the grid file {path}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"the grid file {path} is not valid TOML: {err}") from None
    if "grid" in d:
        others = sorted(k for k in d if k != "grid")
        if others:
            raise ValueError(
                f"the grid file {path}: {', '.join(others)} outside [grid]; with a [grid] table "
                "every key goes under it (a defence's settings under [grid.settings.NAME])"
            )
        d = d["grid"]
    return grid_from_dict(d)
