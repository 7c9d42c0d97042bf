"""A sweep's grid: data set x models x attacks x defences x seeds, from flags or a TOML file,
checked as a whole before anything runs (every problem listed, not the first)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

# --quick: a smoke-test size (digits 8x8, one epoch, two rounds)
QUICK = {"resolution": 8, "epochs": 1, "rounds": 2}
KEYS = ("dataset", "resolution", "models", "attacks", "defenses", "seeds", "epochs", "rounds",
        "data_root")  # fmt: skip


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
    """The grid. ``resolution``: digits' image side (other data sets ignore it); ``epochs`` and
    ``rounds``: the training epochs and the defence rounds (None: the data set's defaults)."""

    dataset: str = "digits"
    models: tuple[str, ...] = ("wide_cnn",)
    attacks: tuple[str, ...] = ("badnets",)
    defenses: tuple[str, ...] = ("sau",)
    seeds: tuple[int, ...] = (0,)
    resolution: int | None = None
    epochs: int | None = None
    rounds: int | None = None
    data_root: str | None = field(default=None, compare=False)  # data sets other than digits

    def cells(self) -> list[Cell]:
        return [Cell(self.dataset, m, a, d, s) for m, a, s, d in
                itertools.product(self.models, self.attacks, self.seeds, self.defenses)]  # fmt: skip

    def problems(self) -> list[str]:
        """Every problem of the grid (empty: it can run); nothing is loaded or trained."""
        from ..attacks import ATTACKS
        from ..data import DATASETS
        from ..defenses import DEFENSES
        from ..models import MODELS

        out = []
        if self.dataset not in DATASETS:
            out.append(f"dataset: unknown {self.dataset!r}; choose from {', '.join(DATASETS)}")
        for what, names, known in (("models", self.models, MODELS), ("attacks", self.attacks, ATTACKS),
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
        if self.rounds == 1 and "nad" in self.defenses:
            out.append("rounds: NAD needs at least 2 (teacher rounds, then the student's)")
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
                "data_root": self.data_root}  # fmt: skip


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
    for key in ("dataset", "resolution", "epochs", "rounds", "data_root"):
        if key in d:
            kw[key] = d[key]
    if "dataset" in kw and not isinstance(kw["dataset"], str):
        problems.append(f"dataset: expected a name, got {kw.pop('dataset')!r}")
    grid = Grid(**kw)
    problems += grid.problems()
    if problems:
        raise ValueError("the grid cannot run:\n  " + "\n  ".join(problems))
    return grid


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
    return grid_from_dict(d.get("grid", d))
