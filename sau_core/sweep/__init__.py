"""Sweeps: a grid of data set x models x attacks x defences x seeds, each cell a Ray task writing
an ordinary run directory, and the leaderboard (``sau sweep``)."""

from .cells import COLUMNS, is_finished
from .grid import QUICK, Cell, Grid, grid_from_dict, grid_from_toml
from .leaderboard import collect, read_leaderboard, summary, write_leaderboard
from .run import SweepWarning, run_sweep

__all__ = [
    "COLUMNS", "QUICK", "Cell", "Grid", "SweepWarning", "collect", "grid_from_dict",
    "grid_from_toml", "is_finished", "read_leaderboard", "run_sweep", "summary", "write_leaderboard",
]  # fmt: skip
