"""Sweeps: a grid of data set x models x attacks x defences x seeds, each cell a Ray task writing
an ordinary run directory, and the leaderboard (``sau sweep``)."""

from .cells import COLUMNS, is_finished
from .grid import DEFAULT_MODEL, QUICK, Cell, Grid, default_model, grid_from_dict, grid_from_toml
from .leaderboard import (
    collect,
    read_leaderboard,
    run_lines,
    summary,
    to_markdown,
    write_leaderboard,
)
from .run import SweepWarning, run_sweep

__all__ = [
    "COLUMNS", "DEFAULT_MODEL", "QUICK", "Cell", "Grid", "SweepWarning", "collect",
    "default_model", "grid_from_dict", "grid_from_toml", "is_finished", "read_leaderboard",
    "run_lines", "run_sweep", "summary", "to_markdown", "write_leaderboard",
]  # fmt: skip
